import sys

try:
    from .cli import main
except KeyboardInterrupt:          # Ctrl-C while dtrun is still importing: no traceback
    sys.stderr.write("\ndtrun: interrupted; nothing was started\n")
    sys.exit(130)

main(prog_name="dtrun")

"""The `dtrun` command line (click).

`dtrun [run] -n N TARGET [ARGS]...` — TARGET is a config (`*.toml`: a training job) or a
Python script (library mode, like torchrun). `dtrun plot RUN_DIR` draws the curves of a run.
"""
import os
import sys

import click

from . import interrupt, mpi

CONTEXT = dict(help_option_names=["-h", "--help"], max_content_width=100)


class _RunByDefault(click.Group):
    """`dtrun -n 2 job.toml` means `dtrun run -n 2 job.toml`."""

    def invoke(self, ctx):
        # Ctrl-C before the ranks start: status 130 and one line (click would say "Aborted!", status 1)
        restore = interrupt.install()
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupt.exit_interrupted()
        finally:
            restore()

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            _no_such_command(args[0], self.commands)
            args = ["run"] + list(args)
        return super().parse_args(ctx, args)


def _no_such_command(word, commands):
    """`dtrun chek x.toml`: a bare word close to a command name (not a target or an option) is a typo."""
    import difflib
    if word.startswith("-") or "." in word or os.sep in word or os.path.exists(word):
        return
    match = difflib.get_close_matches(word, list(commands), n=1, cutoff=0.6)
    if match:
        raise click.UsageError(f"No such command '{word}'. Did you mean '{match[0]}'? "
                               f"(commands: {', '.join(sorted(commands))})")


@click.group(cls=_RunByDefault, context_settings=CONTEXT)
@click.version_option(package_name="disttrain", prog_name="dtrun")
def main():
    """Launch disttrain training on N MPI ranks.

    \b
      dtrun -n 2 configs/digits_mlp.toml              a config job (same as `dtrun run ...`)
      dtrun -n 2 configs/digits_mlp.toml --set optimizer.lr=0.05
      dtrun -n 2 configs/digits_mlp.toml --run-dir runs/a --resume
      dtrun -n 4 train.py --my-arg 1                   your own script on 4 ranks
      dtrun plot runs/digits_mlp-20260101-120000      loss/accuracy curves to a PNG

    Run `dtrun run --help` for all options of a launch.
    """


class _RunCommand(click.Command):
    """Options may follow a config (`dtrun -n 2 job.toml --set a.b=1 --resume`); everything after
    a script (`dtrun -n 2 train.py --lr 1`) belongs to the script."""

    def parse_args(self, ctx, args):
        args = list(args)
        takes_value = {opt for p in self.params if isinstance(p, click.Option) and not p.is_flag
                       for opt in p.opts + p.secondary_opts}
        options, positional, i = [], [], 0
        while i < len(args):
            a = args[i]
            if a == "--":
                positional += args[i + 1:]
                break
            if a.startswith("-"):            # before TARGET, or after a config
                options.append(a)
                if a in takes_value and i + 1 < len(args):
                    options.append(args[i + 1])
                    i += 1
            elif positional or a.endswith(".toml"):
                positional.append(a)
            else:                            # a script: everything after it is its own
                _refuse_dry_run_after_script(a, args[i + 1:])
                return super().parse_args(ctx, args)
            i += 1
        if positional:
            args = options + ["--"] + positional
        return super().parse_args(ctx, args)


def _refuse_dry_run_after_script(script, rest):
    """Options after a script go to the script, so `dtrun -n 2 x.py --dry-run` would run it: refuse.
    `dtrun -n 2 -- x.py --dry-run` (a `--` before the script) passes the script's own --dry-run."""
    if "--dry-run" in rest:
        raise click.UsageError(f"--dry-run after the script {script} would be passed to the script (everything "
                               f"after it is its own), so nothing was run. Put it before the script: "
                               f"dtrun --dry-run ... {script} ... (for a --dry-run option of your script, put `--` "
                               f"before the script: dtrun -n N -- {script} --dry-run)")


def _parse_env(values):
    env = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum() or key[0].isdigit():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY a variable name",
                                     param_hint="--env")
        env[key] = val
    return env


@main.command("run", cls=_RunCommand, short_help="Run a config job or a script on N ranks (the default command).",
              context_settings=dict(CONTEXT, allow_interspersed_args=False))
@click.option("-n", "--nprocs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of ranks. 1 runs in this process, without mpiexec.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config key, e.g. --set optimizer.lr=0.05 (TOML value syntax; "
                   "repeatable). Config jobs only.")
@click.option("--unset", "unset", multiple=True, metavar="SECTION.KEY",
              help="Remove a key the config file sets (its default applies), e.g. --unset train.max_steps; "
                   "repeatable, applied before --set. Config jobs only.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default: <job.output_dir>/<job.name>-<timestamp>). Config jobs only.")
@click.option("--resume", is_flag=True,
              help="Continue from the latest checkpoint in --run-dir (or in the newest run "
                   "directory of this job). Config jobs only.")
@click.option("--mpiexec", "mpiexec_path", metavar="PATH", default=None,
              help="mpiexec to use (default: the one of the MPI mpi4py uses, e.g. the mpich "
                   "wheel's next to this Python).")
@click.option("--hostfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Host file, passed to mpiexec (-f for MPICH, --hostfile for Open MPI).")
@click.option("--hosts", metavar="H1,H2,...", default=None,
              help="Comma-separated hosts, passed to mpiexec (-hosts / --host).")
@click.option("--env", "env_items", multiple=True, metavar="KEY=VALUE",
              help="Set an environment variable on every rank (repeatable).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop every rank and exit with status 124 after this many seconds.")
@click.option("--threads-per-rank", type=click.IntRange(min=1), default=None,
              help="BLAS/Numba threads per rank (default: cores / ranks on this machine; "
                   "variables already set in the environment win).")
@click.option("--dry-run", is_flag=True,
              help="Print the exact command and exit without running or writing anything (comment lines "
                   "name what dtrun creates only at launch).")
@click.argument("target", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(nprocs, overrides, unset, run_dir, resume, mpiexec_path, hostfile, hosts, env_items, timeout,
            threads_per_rank, dry_run, target, args):
    """Run TARGET on N ranks: a config job (TARGET ends in .toml) or a Python script.

    \b
    Options may also follow a config; everything after a script is the script's: it gets
    ARGS as its sys.argv[1:]. Each rank runs under `python -m mpi4py`, so an
    uncaught exception or sys.exit(non-zero) on any rank aborts every rank; dtrun then names
    the failing rank, prints its traceback and exits non-zero. Output lines are prefixed
    with their rank ("[1] ..."); rank 0 of a config job draws a progress bar when dtrun's
    output is a terminal and logs plain lines otherwise. Ctrl-C stops every rank.
    """
    from . import launcher
    env = _parse_env(env_items)
    is_config = target.endswith(".toml")
    if not is_config:
        if overrides or unset or run_dir or resume:
            raise click.UsageError("--set, --unset, --run-dir and --resume apply to config jobs (TARGET.toml) only")
        if not target.endswith(".py"):
            raise click.UsageError(f"TARGET {target!r} must be a config (.toml) or a Python script (.py)")
    elif args:
        raise click.UsageError(f"unexpected arguments after the config: {' '.join(args)} "
                               "(a config takes no arguments; use --set KEY=VALUE to change it)")
    if not os.path.isfile(target):
        raise click.BadParameter(f"{target}: no such file", param_hint="TARGET")
    try:
        rc = launcher.launch(
            nprocs=nprocs, target=target, args=list(args), is_config=is_config,
            overrides=list(overrides), run_dir=run_dir, resume=resume, mpiexec_path=mpiexec_path,
            hostfile=hostfile, hosts=hosts, env=env, timeout=timeout,
            threads_per_rank=threads_per_rank, dry_run=dry_run, unset=list(unset))
    except mpi.LaunchError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(rc)


@main.command("plot", context_settings=CONTEXT, short_help="Draw loss/accuracy curves of a run to a PNG.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="PNG to write (default: RUN_DIR/curves.png).")
def plot_cmd(run_dir, output):
    """Draw training loss and validation accuracy of RUN_DIR/metrics.jsonl to a PNG.

    Needs matplotlib: pip install "disttrain[plot]".
    """
    from disttrain.training.plot import PlotError, plot_run
    try:
        path = plot_run(run_dir, output)
    except PlotError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path}")


@main.command("check", context_settings=CONTEXT, short_help="Validate a config and print it resolved.")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("-n", "--nprocs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of ranks the job would run on (batch and checkpoint checks depend on it).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key.")
@click.option("--unset", "unset", multiple=True, metavar="SECTION.KEY", help="Remove a key the config sets.")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="Run directory to check.")
@click.option("--resume", is_flag=True, help="Check resuming --run-dir (or the newest run of this job).")
def check_cmd(config, nprocs, overrides, unset, run_dir, resume):
    """Run every check `dtrun run` runs before it launches (config, run directory, data, model, the
    checkpoint to resume from) and print the resolved config as TOML. Nothing is written."""
    from disttrain.training.config import ConfigError, dump_toml
    from disttrain.training.job import check_job
    try:
        cfg, _ = check_job(config, overrides, unset, run_dir, resume, nprocs)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(dump_toml(cfg), nl=False)


"""The `dtrun` command line (click).

`dtrun [run] -n N TARGET [ARGS]...` — TARGET is a config (`*.toml`: a training job) or a
Python script (library mode, like torchrun). `dtrun plot RUN_DIR` draws the curves of a run.
"""
import os
import re
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
            if a in ("-m", "--module"):       # like python -m: everything after MODULE is its own
                return super().parse_args(ctx, options + args[i:i + 2] + ["--"] + args[i + 2:])
            if a.startswith("-"):            # before TARGET, or after a config
                options.append(a)
                if a in takes_value and i + 1 < len(args):
                    options.append(args[i + 1])
                    i += 1
            elif positional or a.endswith(".toml"):
                positional.append(a)
            else:                            # a script: everything after it is its own
                _refuse_dry_run_after_script(a, args[i + 1:])
                return super().parse_args(ctx, options + ["--"] + args[i:])
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
@click.option("-n", "-np", "--nprocs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of ranks. 1 runs in this process, without mpiexec (unless hosts are given).")
@click.option("-m", "--module", metavar="MODULE", default=None,
              help="Run a Python module on every rank, like python -m (everything after MODULE is its own).")
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
              help="Hosts to run on, one a line: HOST, HOST:SLOTS or HOST slots=SLOTS (# comments). "
                   "Translated for the MPI in use (like --hosts).")
@click.option("-H", "--hosts", metavar="H0:S,H1:S", default=None,
              help="Hosts to run on, comma-separated, each HOST or HOST:SLOTS (e.g. h0:2,h1:2). Ranks fill "
                   "the hosts in order, SLOTS each (hosts without SLOTS share the rest evenly).")
@click.option("--launcher", metavar="NAME", default=None,
              help="How mpiexec starts processes on other hosts (ssh, rsh, slurm, ...): MPICH -launcher, "
                   "Open MPI --prtemca plm.")
@click.option("--launcher-exec", metavar="PROGRAM", default=None,
              help="The program the launcher runs to reach a host (e.g. an ssh wrapper): MPICH "
                   "-launcher-exec, Open MPI --prtemca plm_ssh_agent.")
@click.option("--iface", metavar="NAME", default=None,
              help="Network interface for MPI traffic (e.g. eth1): Hydra -iface, FI_TCP_IFACE, "
                   "UCX_NET_DEVICES, Open MPI btl_tcp_if_include/oob_tcp_if_include.")
@click.option("--force-tcp", is_flag=True,
              help="Send all MPI traffic over TCP, no shared memory or fast fabric (MPICH: "
                   "MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp; Open MPI: --mca pml ob1 --mca btl tcp,self).")
@click.option("--mpiexec-arg", "mpiexec_args", multiple=True, metavar="ARG",
              help="Pass ARG to mpiexec as it is, before the program (repeatable; one word each).")
@click.option("--env", "env_items", multiple=True, metavar="KEY=VALUE",
              help="Set an environment variable on every rank (repeatable).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop every rank and exit with status 124 after this many seconds.")
@click.option("--threads-per-rank", type=click.IntRange(min=1), default=None,
              help="BLAS/Numba threads per rank (default: cores / ranks on this machine; "
                   "variables already set in the environment win).")
@click.option("--dry-run", is_flag=True,
              help="Print the exact command and the environment every rank gets, and exit without running "
                   "or writing anything (comment lines name what dtrun creates only at launch).")
@click.argument("target", type=click.Path(dir_okay=False), required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_cmd(nprocs, module, overrides, unset, run_dir, resume, mpiexec_path, hostfile, hosts, launcher, launcher_exec,
            iface, force_tcp, mpiexec_args, env_items, timeout, threads_per_rank, dry_run, target, args):
    """Run TARGET on N ranks: a config job (TARGET ends in .toml), a Python script, or
    `-m MODULE`.

    \b
    Options may also follow a config; everything after a script (or -m MODULE) is the
    script's: it gets ARGS as its sys.argv[1:]. `dtrun -n 2 python train.py` is the same as
    `dtrun -n 2 train.py` (dtrun's own Python runs it). Each rank runs under
    `python -m mpi4py`, so an uncaught exception or sys.exit(non-zero) on any rank aborts every
    rank; dtrun then names the failing rank (and its host), prints its traceback and exits
    non-zero. Output lines are prefixed with their rank ("[1] ..."); rank 0 of a config job
    draws a progress bar when dtrun's output is a terminal and logs plain lines otherwise.
    Every rank gets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, NODE_RANK, MASTER_ADDR and
    MASTER_PORT (torchrun's names). Ctrl-C (or SIGTERM, SIGHUP) stops every rank on every host.
    """
    from . import launcher as launcher_mod
    env = _parse_env(env_items)
    target, args, module = _interpreter_stripped(target, list(args), module)
    is_config = target is not None and target.endswith(".toml")
    if not is_config:
        if overrides or unset or run_dir or resume:
            raise click.UsageError("--set, --unset, --run-dir and --resume apply to config jobs (TARGET.toml) only")
        if module is None:
            _check_script(target)
    elif args:
        raise click.UsageError(f"unexpected arguments after the config: {' '.join(args)} "
                               "(a config takes no arguments; use --set KEY=VALUE to change it)")
    if target is not None and not os.path.isfile(target):
        raise click.BadParameter(f"{target}: no such file", param_hint="TARGET")
    try:
        rc = launcher_mod.launch(
            nprocs=nprocs, target=target, args=args, is_config=is_config, module=module,
            overrides=list(overrides), run_dir=run_dir, resume=resume, mpiexec_path=mpiexec_path,
            hostfile=hostfile, hosts=hosts, env=env, timeout=timeout,
            threads_per_rank=threads_per_rank, dry_run=dry_run, unset=list(unset),
            placement=dict(launcher=launcher, launcher_exec=launcher_exec, iface=iface, force_tcp=force_tcp,
                           mpiexec_args=list(mpiexec_args)))
    except mpi.LaunchError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(rc)


def _is_python(word):
    name = os.path.basename(word)
    return name == os.path.basename(sys.executable) or re.fullmatch(r"python[0-9.]*", name) is not None


def _interpreter_stripped(target, args, module):
    """`dtrun -n 2 python train.py ARGS` / `python -m mod ARGS` (torchrun/mpirun habits): dtrun's own
    Python runs every rank, so the interpreter word is dropped. Returns (target, args, module)."""
    if module is not None:              # -m MODULE ARGS: click put the first argument in TARGET
        return None, ([target] if target is not None else []) + args, module
    if target is None:
        raise click.UsageError("missing TARGET: a config (.toml), a Python script (.py), or -m MODULE")
    if not _is_python(target) or os.path.isfile(target) and not os.access(target, os.X_OK):
        return target, args, module
    if args[:1] == ["-m"] and len(args) >= 2:
        return None, args[2:], args[1]
    if not args or args[0].startswith("-"):
        raise click.UsageError(f"`{target} {' '.join(args)}`: dtrun runs Python on every rank itself; give it "
                               "the script or module: dtrun -n N train.py ARGS, or dtrun -n N -m package.module ARGS")
    return args[0], args[1:], module


def _check_script(target):
    """A script is a .py file, or a file whose #! line names Python."""
    if target.endswith(".py"):
        return
    try:
        with open(target, "rb") as f:
            first = f.readline(200)
    except OSError:
        return                          # the "no such file" check reports it
    if first.startswith(b"#!") and b"python" in first:
        return
    raise click.UsageError(
        f"TARGET {target!r} must be a config (.toml) or a Python script (.py): dtrun runs Python on every rank. "
        f"For a module type `dtrun -n N -m package.module ARGS`; for any other program use mpiexec itself, "
        f"e.g. `mpiexec -n N {target}`")


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


@main.command("sample", context_settings=CONTEXT, short_help="Print text sampled from a trained language model.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--tokens", type=click.IntRange(min=1), default=500, show_default=True,
              help="Characters to generate.")
@click.option("--prompt", default="\n", show_default=True, help="Text to start from (characters of the vocabulary).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=0.8, show_default=True,
              help="Divide the logits by this before sampling (lower: more conservative).")
@click.option("--top-k", type=click.IntRange(min=0), default=200, show_default=True,
              help="Sample among the k most likely characters only (0: all).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the sampling.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Checkpoint to load (default: the newest in RUN_DIR/checkpoints).")
def sample_cmd(run_dir, tokens, prompt, temperature, top_k, seed, checkpoint):
    """Load RUN_DIR's model (newest checkpoint) and vocabulary and print a sampled text."""
    from disttrain.training.checkpoint import CheckpointError
    from disttrain.training.sample import SampleError, sample_run
    try:
        text, path, step = sample_run(run_dir, tokens, prompt, temperature, top_k, seed, checkpoint)
    except (SampleError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"# {path} (step {step}), temperature {temperature}, top-k {top_k}, seed {seed}", err=True)
    click.echo(text)


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


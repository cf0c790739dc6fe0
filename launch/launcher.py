"""`dtrun run`: check the job, then run it in this process (-n 1) or under mpiexec."""
import os
import runpy
import shlex
import sys
import threading

from . import interrupt, mpi, runner


def _config_job(target, overrides, run_dir, resume, nprocs, dry_run, unset=()):
    from disttrain.training import job
    from disttrain.training.config import ConfigError
    try:
        return job.check_job(target, overrides, unset, run_dir, resume, nprocs, dry_run)
    except ConfigError as exc:
        raise mpi.LaunchError(str(exc)) from None


def _create_run_dir(cfg, run_dir):
    from disttrain.training import job
    from disttrain.training.config import ConfigError
    try:
        job.create_run_dir(cfg, run_dir)
    except ConfigError as exc:
        raise mpi.LaunchError(str(exc)) from None


def _watchdog(timeout):
    """-n 1 has no mpiexec to stop: end this process when the time is up."""
    def fire():
        sys.stderr.write(f"\ndtrun: the job exceeded --timeout {timeout:g} s; stopping.\n")
        sys.stderr.flush()
        os._exit(124)
    t = threading.Timer(timeout, fire)
    t.daemon = True
    t.start()
    return t


def launch(nprocs, target, args, is_config, overrides, run_dir, resume, mpiexec_path, hostfile, hosts, env,
           timeout, threads_per_rank, dry_run, unset=()):
    in_process = nprocs == 1 and not hostfile and not hosts
    if in_process and not dry_run:      # before numpy/BLAS load, so thread settings take effect
        if threads_per_rank:
            os.environ.update({k: str(threads_per_rank) for k in mpi.THREAD_ENV_VARS})
        os.environ.update(env)
    import disttrain  # noqa: F401  (sets the default NUMBA_CACHE_DIR that ranks share)
    cfg = None
    dir_given = run_dir is not None
    if is_config:
        cfg, run_dir = _config_job(target, overrides, run_dir, resume, nprocs, dry_run, unset)
    interrupt.check()      # a Ctrl-C swallowed while the preflight compiled kernels still stops dtrun here

    if in_process:
        what = (f"config job {target} -> {run_dir}" + (" (resume)" if resume else "")) if is_config \
            else shlex.join([sys.executable, target] + args)
        if dry_run:
            print(f"# -n 1: runs in this process, without mpiexec: {what}")
            if is_config:
                print(_run_dir_note(run_dir, resume, dir_given))
            return 0
        if timeout:
            _watchdog(timeout)
        if is_config:
            _create_run_dir(cfg, run_dir)
        try:
            if is_config:
                from disttrain.training import job
                job.run_in_process(cfg, run_dir, resume)
                return 0
            sys.argv = [target] + list(args)
            sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
            runpy.run_path(target, run_name="__main__")
        except KeyboardInterrupt:
            sys.stderr.write("\ndtrun: interrupted\n")
            return 130
        except SystemExit as exc:
            if exc.code in (None, 0) or is_config:     # a config job's SystemExit is its whole message
                raise
            return _in_process_failure(exc)
        except Exception as exc:
            return _in_process_failure(exc)
        return 0

    mpiexec = mpi.find_mpiexec(mpiexec_path)
    dialect = mpi.detect_dialect(mpiexec)
    nhosts = len(hosts.split(",")) if hosts else (_count_hosts(hostfile) if hostfile else 1)
    rank_env = {
        "NUMBA_CACHE_DIR": os.environ["NUMBA_CACHE_DIR"],
        "PYTHONUNBUFFERED": "1",          # lines reach the launcher as they are printed
        "DTRUN_CONTROL": "1",
        "DTRUN_PROGRESS": "bar" if sys.stdout.isatty() else "plain",
    }
    if threads_per_rank:
        rank_env.update({k: str(threads_per_rank) for k in mpi.THREAD_ENV_VARS})
    else:
        rank_env.update(mpi.thread_env(nprocs, nhosts, env))
    rank_env.update(env)
    if is_config:
        rank_argv = ["-m", "mpi4py", "-m", "launch.rank", "config", os.path.abspath(run_dir)]
        rank_argv += ["--resume"] if resume else []
    else:
        rank_argv = ["-m", "mpi4py", "-m", "launch.rank", "script", os.path.abspath(target)] + list(args)
    io_dir = runner.io_dir_placeholder() if dry_run else runner.make_io_dir()
    spec = mpi.LaunchSpec(nprocs=nprocs, rank_argv=rank_argv, env=rank_env, hostfile=hostfile, hosts=hosts,
                          timeout=timeout, io_dir=io_dir)
    argv, launcher_env = mpi.build_command(spec, mpiexec, dialect)
    if dry_run:
        prefix = [f"{k}={v}" for k, v in launcher_env.items()]
        print(shlex.join((["env"] + prefix if prefix else []) + argv))
        print(f"# placeholder: {io_dir} stands for the temporary directory dtrun creates at launch for "
              "the ranks' output files (dtrun reads them, prints each line prefixed with its rank, and "
              "removes the directory after the job)")
        if is_config:
            print(_run_dir_note(run_dir, resume, dir_given) +
                  "; the ranks read that file, so the command above runs only after dtrun has written it")
        return 0
    try:
        if is_config:
            _create_run_dir(cfg, run_dir)
            print(f"dtrun: {nprocs} ranks, run directory {run_dir}", flush=True)
        if not is_config:
            _warm_numba_cache()
        return runner.run(argv, launcher_env, nprocs, dialect, io_dir, timeout=timeout,
                          local=not (hostfile or hosts))
    finally:
        runner.remove_io_dir(io_dir)


def _run_dir_note(run_dir, resume, dir_given):
    """What a config job will write, for --dry-run (which writes nothing)."""
    name = run_dir if dir_given or resume else f"{run_dir} (its timestamp is taken at launch)"
    return (f"# run directory: {name}" + (" (resume)" if resume else "") +
            f"; written at launch: {os.path.join(run_dir, 'config.toml')} (the resolved config)")


def _in_process_failure(exc):
    """Report a failure of the `-n 1` job as an N-rank launch reports its failing rank: why, then
    the traceback without dtrun's own frames (click, this launcher, runpy). Returns the exit status."""
    from .rank import describe, traceback_lines
    is_exit = isinstance(exc, SystemExit)
    runner.write_rank_failure(0, describe(exc), [] if is_exit else traceback_lines(exc))
    return exc.code if is_exit and isinstance(exc.code, int) else 1


def _count_hosts(path):
    try:
        with open(path) as f:
            return max(1, sum(1 for line in f if line.strip() and not line.lstrip().startswith("#")))
    except OSError:
        return 1


def _warm_numba_cache():
    """Script jobs: compile the common kernels once, here, before N ranks would race to."""
    from . import warmup
    warmup.warm()

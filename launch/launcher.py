"""`dtrun run`: check the job, then run it in this process (-n 1) or under mpiexec."""
import os
import runpy
import shlex
import sys
import threading

from . import mpi, runner


def _config_job(target, overrides, run_dir, resume, nprocs, dry_run):
    from disttrain.training import job
    from disttrain.training.config import ConfigError, load_config
    try:
        cfg = load_config(target, overrides)
        run_dir = job.plan_run_dir(cfg, run_dir, resume)
        if not dry_run:
            job.preflight(cfg, run_dir, resume, nprocs)
    except ConfigError as exc:
        raise mpi.LaunchError(str(exc)) from None
    return cfg, run_dir


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
           timeout, threads_per_rank, dry_run, module=None, placement=None):
    """``placement``: LaunchSpec fields for multi-host runs (launcher, launcher_exec, iface, force_tcp,
    mpiexec_args)."""
    placement = dict(placement or {})
    host_list = _host_list(hosts, hostfile)
    in_process = nprocs == 1 and host_list is None and not placement.get("mpiexec_args")
    if in_process and not dry_run:      # before numpy/BLAS load, so thread settings take effect
        if threads_per_rank:
            os.environ.update({k: str(threads_per_rank) for k in mpi.THREAD_ENV_VARS})
        os.environ.update(env)
    import disttrain  # noqa: F401  (sets the default NUMBA_CACHE_DIR that ranks share)
    cfg = None
    dir_given = run_dir is not None
    if is_config:
        cfg, run_dir = _config_job(target, overrides, run_dir, resume, nprocs, dry_run)

    if in_process:
        what = (f"config job {target} -> {run_dir}" + (" (resume)" if resume else "")) if is_config \
            else shlex.join([sys.executable] + (["-m", module] if module else [target]) + args)
        if dry_run:
            print(f"# -n 1: runs in this process, without mpiexec: {what}")
            if is_config:
                print(_run_dir_note(run_dir, resume, dir_given))
            return 0
        if timeout:
            _watchdog(timeout)
        from .rank import set_torchrun_env
        set_torchrun_env(0, 1, 0, 1, 0, "127.0.0.1")
        try:
            if is_config:
                from disttrain.training import job
                job.create_run_dir(cfg, run_dir)
                job.run_in_process(cfg, run_dir, resume)
                return 0
            if module:
                sys.argv = [module] + list(args)
                sys.path.insert(0, os.getcwd())
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
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
    hosts = mpi.place(host_list, nprocs) if host_list else None
    local_ranks = max(n for _, n in hosts) if hosts else nprocs
    io_dir = runner.io_dir_placeholder() if dry_run else runner.make_io_dir()
    rank_env = {
        "NUMBA_CACHE_DIR": os.environ["NUMBA_CACHE_DIR"],
        "PYTHONUNBUFFERED": "1",          # lines reach the launcher as they are printed
        "DTRUN_CONTROL": "1",
        "DTRUN_IO_DIR": io_dir,           # each rank writes its stdout/stderr there (launch.rank)
        "DTRUN_PROGRESS": "bar" if sys.stdout.isatty() else "plain",
    }
    if threads_per_rank:
        rank_env.update({k: str(threads_per_rank) for k in mpi.THREAD_ENV_VARS})
    else:
        rank_env.update(mpi.thread_env(local_ranks, env))
    rank_env.update(env)
    if is_config:
        rank_argv = ["-m", "mpi4py", "-m", "launch.rank", "config", os.path.abspath(run_dir)]
        rank_argv += ["--resume"] if resume else []
    elif module:
        rank_argv = ["-m", "mpi4py", "-m", "launch.rank", "module", module] + list(args)
    else:
        rank_argv = ["-m", "mpi4py", "-m", "launch.rank", "script", os.path.abspath(target)] + list(args)
    spec = mpi.LaunchSpec(nprocs=nprocs, rank_argv=rank_argv, env=rank_env, hosts=hosts, timeout=timeout,
                          **placement)
    argv, launcher_env = mpi.build_command(spec, mpiexec, dialect)
    if dry_run:
        prefix = [f"{k}={v}" for k, v in launcher_env.items()]
        print(shlex.join((["env"] + prefix if prefix else []) + argv))
        for line in _env_notes(spec, dialect, launcher_env):
            print(line)
        print(f"# placeholder: {io_dir} stands for the temporary directory dtrun creates at launch for "
              "the ranks' output files (dtrun reads them, prints each line prefixed with its rank, and "
              "removes the directory after the job)")
        if is_config:
            print(_run_dir_note(run_dir, resume, dir_given) +
                  "; the ranks read that file, so the command above runs only after dtrun has written it")
        return 0
    try:
        if is_config:
            from disttrain.training import job
            job.create_run_dir(cfg, run_dir)
            print(f"dtrun: {nprocs} ranks, run directory {run_dir}", flush=True)
        if not is_config:
            _warm_numba_cache()
        return runner.run(argv, launcher_env, nprocs, io_dir, timeout=timeout)
    finally:
        runner.remove_io_dir(io_dir)


def _host_list(hosts, hostfile):
    """[(host, slots or None)] from --hosts or --hostfile; None for this machine only."""
    if hosts and hostfile:
        raise mpi.LaunchError("give --hosts or --hostfile, not both")
    if hosts:
        return mpi.parse_hosts(hosts)
    if hostfile:
        return mpi.read_hostfile(hostfile)
    return None


def _env_notes(spec, dialect, launcher_env):
    """--dry-run: every variable dtrun sets or forwards, as comment lines."""
    env = dict(mpi.transport_env(spec), **spec.env)
    notes = ["# environment set on every rank: " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())]
    if dialect == mpi.MPICH:
        names = sorted(os.environ)
        notes.append(f"# forwarded to every rank: dtrun's whole environment (Hydra's default), {len(names)} "
                     "variables: " + " ".join(names))
    else:
        fwd = mpi.forwarded(env)
        notes.append("# forwarded to every rank (-x NAME): " +
                     " ".join(shlex.quote(f"{k}={os.environ[k]}") for k in fwd))
    notes.append("# set by launch.rank in each rank before your code runs: RANK WORLD_SIZE LOCAL_RANK "
                  "LOCAL_WORLD_SIZE NODE_RANK MASTER_ADDR MASTER_PORT (from " +
                  ("PMI_RANK, PMI_SIZE, PMI_HOSTNAME" if dialect == mpi.MPICH else
                   "OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, PMIX_HOSTNAME") + " and the hosts of all ranks)")
    if launcher_env:
        notes.append("# set for mpiexec itself: " + " ".join(f"{k}={v}" for k, v in launcher_env.items()))
    return notes


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


def _warm_numba_cache():
    """Script jobs: compile the common kernels once, here, before N ranks would race to."""
    from . import warmup
    warmup.warm()

"""dtrun's command line: help text, dry-run command construction for MPICH and Open MPI."""
import os
import shlex
import stat
import sys

from dtrun_helpers import CONFIGS, dtrun, launch_mpi, write

mpi = launch_mpi()


def test_help_lists_commands_and_options(tmp_path):
    rc, out, err, _ = dtrun("--help", cwd=tmp_path, timeout=60)
    assert rc == 0
    for text in ("run", "plot", "check", "dtrun -n 2 configs/digits_mlp.toml", "--set optimizer.lr"):
        assert text in out
    rc, out, err, _ = dtrun("run", "--help", cwd=tmp_path, timeout=60)
    assert rc == 0
    for opt in ("--nprocs", "--set", "--run-dir", "--resume", "--mpiexec", "--hostfile", "--hosts", "--env",
                "--timeout", "--threads-per-rank", "--dry-run", "python -m mpi4py", "Ctrl-C"):
        assert opt in out, opt
    rc, out, err, _ = dtrun("plot", "--help", cwd=tmp_path, timeout=60)
    assert rc == 0 and "matplotlib" in out


def test_wrong_option_gets_clicks_message(tmp_path):
    rc, out, err, _ = dtrun("-n", "2", "--no-such-option", os.path.join(CONFIGS, "digits_mlp.toml"),
                            cwd=tmp_path, timeout=60)
    assert rc == 2 and "No such option '--no-such-option'" in err and "Traceback" not in err
    rc, out, err, _ = dtrun("-n", "0", "x.py", cwd=tmp_path, timeout=60)
    assert rc == 2 and "Invalid value for '-n'" in err


def _dry(tmp_path, *args, env=None):
    rc, out, err, _ = dtrun("--dry-run", *args, cwd=tmp_path, timeout=60, env=env)   # after a script: its args
    assert rc == 0, err
    line = out.splitlines()[0]
    return shlex.split(line)


def test_dry_run_mpich(tmp_path):
    script = write(tmp_path / "train.py", "print('hi')\n")
    hostfile = write(tmp_path / "hosts", "a\nb\n")
    argv = _dry(tmp_path, "-n", "3", "--env", "FOO=bar baz", "--timeout", "30", "--hostfile", hostfile,
                script, "--lr", "0.1", env={k: None for k in mpi.THREAD_ENV_VARS})
    assert argv[0] == "env" and argv[1] == "MPIEXEC_TIMEOUT=35"       # Hydra's own limit backs up the watchdog
    mpiexec = argv[2]
    assert mpiexec == os.path.join(os.path.dirname(sys.executable), "mpiexec")   # the wheel's, next to Python
    assert argv[3:5] == ["-n", "3"]
    assert argv[argv.index("-f") + 1] == hostfile
    i = argv.index("FOO")
    assert argv[i - 1] == "-genv" and argv[i + 1] == "bar baz"      # an argument list, never a shell string
    assert ["-genv", "NUMBA_CACHE_DIR"] == argv[argv.index("NUMBA_CACHE_DIR") - 1:argv.index("NUMBA_CACHE_DIR") + 1]
    assert "-outfile-pattern" in argv and "-errfile-pattern" in argv and "-prepend-rank" not in argv
    io_dir = os.path.dirname(argv[argv.index("-outfile-pattern") + 1])
    assert io_dir == os.path.dirname(argv[argv.index("-errfile-pattern") + 1])
    # that directory only exists once dtrun runs the job: the output says it is a placeholder
    rc, out, err, _ = dtrun("--dry-run", "-n", "3", script, cwd=tmp_path, timeout=60)
    assert f"# placeholder: {io_dir} stands for the temporary directory dtrun creates at launch" in out, out
    assert not os.path.exists(io_dir)
    tail = argv[argv.index(sys.executable):]
    assert tail == [sys.executable, "-m", "mpi4py", "-m", "launch.rank", "script", script, "--lr", "0.1"]
    # thread limits: 3 ranks over 2 hosts -> 2 local ranks -> cores // 2 threads each
    threads = max(1, mpi.cpu_count() // 2)
    assert argv[argv.index("OPENBLAS_NUM_THREADS") + 1] == str(threads)
    assert argv[argv.index("NUMBA_NUM_THREADS") + 1] == str(threads)

    argv = _dry(tmp_path, "-n", "2", "--hosts", "n1,n2", script)
    assert argv[0] != "env" and argv[argv.index("-hosts") + 1] == "n1,n2"


def test_dry_run_user_thread_settings_win(tmp_path):
    script = write(tmp_path / "train.py", "")
    argv = _dry(tmp_path, "-n", "2", "--env", "OMP_NUM_THREADS=3", script, env={"OMP_NUM_THREADS": None})
    assert argv[argv.index("OMP_NUM_THREADS") + 1] == "3"
    argv = _dry(tmp_path, "-n", "2", "--threads-per-rank", "2", script)
    assert argv[argv.index("MKL_NUM_THREADS") + 1] == "2"


def _fake_openmpi(tmp_path):
    path = tmp_path / "fake-mpirun"
    write(path, "#!/bin/sh\necho 'mpirun (Open MPI) 4.1.5'\necho\necho 'Report bugs to http://www.open-mpi.org/'\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return str(path)


def test_dry_run_openmpi(tmp_path):
    fake = _fake_openmpi(tmp_path)
    script = write(tmp_path / "train.py", "")
    hostfile = write(tmp_path / "hosts", "a slots=2\n")
    argv = _dry(tmp_path, "--mpiexec", fake, "-n", "2", "--env", "A=1", "--timeout", "10", "--hostfile", hostfile,
                script)
    assert argv[0] == fake and argv[1:3] == ["-n", "2"]
    assert argv[argv.index("--hostfile") + 1] == hostfile
    assert "-x" in argv and "A=1" in argv and argv[argv.index("A=1") - 1] == "-x"
    assert argv[argv.index("--timeout") + 1] == "15"
    assert "--output-filename" in argv and "-genv" not in argv
    assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)
    assert "--oversubscribe" not in argv                            # a host file says where slots are
    n = mpi.cpu_count() + 2
    argv = _dry(tmp_path, "--mpiexec", fake, "-n", str(n), "--hosts", "h1,h2", script)
    assert argv[argv.index("--host") + 1] == "h1,h2" and "--oversubscribe" not in argv
    argv = _dry(tmp_path, "--mpiexec", fake, "-n", str(n), script)
    assert "--oversubscribe" in argv                                 # more ranks than cores on this machine


def test_dry_run_config_job_and_n1(tmp_path):
    cfg = os.path.join(CONFIGS, "digits_mlp.toml")
    rc, out, err, _ = dtrun("-n", "2", cfg, "--run-dir", "myrun", "--set", "train.epochs=1", "--dry-run",
                            cwd=tmp_path, timeout=60)
    assert rc == 0, err
    argv = shlex.split(out.splitlines()[0])
    assert argv[-2:] == ["config", str(tmp_path / "myrun")]
    # the ranks read myrun/config.toml, which dtrun writes at launch: the output says so
    assert ("# run directory: myrun; written at launch: myrun/config.toml (the resolved config); the ranks read "
            "that file, so the command above runs only after dtrun has written it") in out.splitlines(), out
    assert not os.path.exists(tmp_path / "myrun")                  # dry run: nothing written
    rc, out, err, _ = dtrun("-n", "1", cfg, "--dry-run", cwd=tmp_path, timeout=60)
    assert rc == 0 and "runs in this process, without mpiexec" in out
    assert "(its timestamp is taken at launch); written at launch: runs/digits_mlp-" in out, out
    assert not os.path.exists(tmp_path / "runs")


def test_missing_mpiexec_is_a_clear_error(tmp_path):
    script = write(tmp_path / "train.py", "")
    rc, out, err, _ = dtrun("--mpiexec", str(tmp_path / "nope"), "-n", "2", "--dry-run", script,
                            cwd=tmp_path, timeout=60)
    assert rc == 1 and "no such executable" in err and "Traceback" not in err


def test_target_must_be_config_or_script(tmp_path):
    write(tmp_path / "x.txt", "")
    rc, out, err, _ = dtrun("-n", "2", "x.txt", cwd=tmp_path, timeout=60)
    assert rc == 2 and "must be a config (.toml) or a Python script (.py)" in err
    rc, out, err, _ = dtrun("-n", "2", "missing.toml", cwd=tmp_path, timeout=60)
    assert rc == 2 and "no such file" in err


def test_plot_writes_png_or_explains_missing_matplotlib(tmp_path):
    import importlib.util
    import json
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for step in (10, 20):
            f.write(json.dumps({"kind": "train", "step": step, "epoch": 1, "loss": 1.0 / step, "accuracy": 0.5,
                                "lr": 0.1, "samples_per_s": 1.0, "sync_s": 0.0, "time": 1.0}) + "\n")
        f.write(json.dumps({"kind": "eval", "step": 20, "epoch": 1, "val_loss": 0.1, "val_accuracy": 0.9,
                            "time": 2.0}) + "\n")
        f.write('{"kind": "train", "st')                   # a line cut off by a kill is skipped
    rc, out, err, _ = dtrun("plot", run, cwd=tmp_path, timeout=60)
    if importlib.util.find_spec("matplotlib") is None:
        assert rc == 1 and 'pip install "disttrain[plot]"' in err and "Traceback" not in err
    else:
        assert rc == 0, err
        assert open(run / "curves.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err, _ = dtrun("plot", empty, cwd=tmp_path, timeout=60)
    assert rc == 1 and "no metrics to plot" in err

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
    for opt in ("--nprocs", "-np", "--set", "--run-dir", "--resume", "--mpiexec", "--hostfile", "--hosts", "-H", "--env",
                "--launcher", "--launcher-exec", "--iface", "--force-tcp", "--mpiexec-arg", "-m, --module",
                "--timeout", "--threads-per-rank", "--dry-run", "python -m mpi4py", "Ctrl-C", "LOCAL_RANK"):
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
    assert argv[argv.index("-hosts") + 1] == "a:2,b:1"             # the host file, as Hydra's host list
    i = argv.index("FOO")
    assert argv[i - 1] == "-genv" and argv[i + 1] == "bar baz"      # an argument list, never a shell string
    assert ["-genv", "NUMBA_CACHE_DIR"] == argv[argv.index("NUMBA_CACHE_DIR") - 1:argv.index("NUMBA_CACHE_DIR") + 1]
    # each rank writes its own output files (launch.rank), the same under every MPI
    assert "-outfile-pattern" not in argv and "-prepend-rank" not in argv
    io_dir = argv[argv.index("DTRUN_IO_DIR") + 1]
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
    assert argv[0] != "env" and argv[argv.index("-hosts") + 1] == "n1:1,n2:1"


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
    assert argv[argv.index("--host") + 1] == "a:2"                  # Open MPI's HOST:SLOTS list
    assert "-x" in argv and "A=1" in argv and argv[argv.index("A=1") - 1] == "-x"
    assert argv[argv.index("--timeout") + 1] == "15"
    assert "--output-filename" not in argv and "-genv" not in argv
    assert ("--allow-run-as-root" in argv) == (os.geteuid() == 0)
    assert "--oversubscribe" not in argv and argv[argv.index("--bind-to") + 1] == "none"   # the slots are given
    n = mpi.cpu_count() + 2
    argv = _dry(tmp_path, "--mpiexec", fake, "-n", str(n), "--hosts", "h1,h2", script)
    assert argv[argv.index("--host") + 1] == f"h1:{(n + 1) // 2},h2:{n // 2}" and "--oversubscribe" not in argv
    argv = _dry(tmp_path, "--mpiexec", fake, "-n", str(n), script)
    assert "--oversubscribe" in argv                                 # more ranks than cores on this machine
    # the interpreter's paths travel to remote ranks (Hydra passes everything; Open MPI only what -x names)
    argv = _dry(tmp_path, "--mpiexec", fake, "-n", "2", script, env={"PYTHONPATH": "/x", "DISTTRAIN_FOO": "1"})
    for name in ("PATH", "PYTHONPATH", "DISTTRAIN_FOO"):
        assert argv[argv.index(name) - 1] == "-x", name


MULTI_HOST = ["-n", "4", "-H", "h0:2,h1:2", "--launcher", "ssh", "--launcher-exec", "/opt/ns-exec", "--iface", "veth1",
              "--force-tcp", "--mpiexec-arg", "-verbose", "--mpiexec-arg", "two words"]


def test_dry_run_multi_host_options_mpich(tmp_path):
    script = write(tmp_path / "train.py", "")
    argv = _dry(tmp_path, *MULTI_HOST, script)
    assert argv[argv.index("-hosts") + 1] == "h0:2,h1:2"
    assert argv[argv.index("-launcher") + 1] == "ssh" and argv[argv.index("-launcher-exec") + 1] == "/opt/ns-exec"
    assert "-iface" not in argv             # Hydra's own -iface only where this machine has the interface
    assert _dry(tmp_path, "-n", "2", "-H", "h0,h1", "--iface", "lo", script)[3:7] == ["-hosts", "h0:1,h1:1", "-iface",
                                                                                      "lo"]
    genv = {argv[i + 1]: argv[i + 2] for i, a in enumerate(argv) if a == "-genv"}
    assert genv["FI_TCP_IFACE"] == "veth1" and genv["UCX_NET_DEVICES"] == "veth1"
    assert genv["MPIR_CVAR_CH4_NETMOD"] == "ofi" and genv["FI_PROVIDER"] == "tcp"
    # escape-hatch arguments go in as they are, one word each, just before the program
    i = argv.index(sys.executable)
    assert argv[i - 2:i] == ["-verbose", "two words"]


def test_dry_run_multi_host_options_openmpi(tmp_path):
    fake = _fake_openmpi(tmp_path)
    script = write(tmp_path / "train.py", "")
    argv = _dry(tmp_path, "--mpiexec", fake, *MULTI_HOST, script)
    line = " ".join(argv)
    assert argv[argv.index("--host") + 1] == "h0:2,h1:2"
    assert "--prtemca plm ssh" in line and "--prtemca plm_ssh_agent /opt/ns-exec" in line
    assert "--mca btl_tcp_if_include veth1" in line and "--prtemca oob_tcp_if_include veth1" in line
    assert "--mca pml ob1 --mca btl tcp,self" in line
    assert "-x UCX_NET_DEVICES=veth1" in line
    i = argv.index(sys.executable)
    assert argv[i - 2:i] == ["-verbose", "two words"]


def test_dry_run_lists_every_variable_set_or_forwarded(tmp_path):
    script = write(tmp_path / "train.py", "")
    rc, out, err, _ = dtrun("--dry-run", "-n", "2", "--env", "A=1", "--iface", "eth9", script, cwd=tmp_path,
                            timeout=60, env={"PYTHONPATH": "/x"})
    assert rc == 0, err
    set_line = next(l for l in out.splitlines() if l.startswith("# environment set on every rank: "))
    for item in ("A=1", "FI_TCP_IFACE=eth9", "DTRUN_CONTROL=1", "NUMBA_CACHE_DIR="):
        assert item in set_line, item
    fwd = next(l for l in out.splitlines() if l.startswith("# forwarded to every rank: dtrun's whole environment"))
    assert " PYTHONPATH" in fwd and " PATH" in fwd
    assert "RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE NODE_RANK MASTER_ADDR MASTER_PORT" in out
    fake = _fake_openmpi(tmp_path)
    rc, out, err, _ = dtrun("--dry-run", "--mpiexec", fake, "-n", "2", script, cwd=tmp_path, timeout=60,
                            env={"PYTHONPATH": "/x"})
    assert "# forwarded to every rank (-x NAME): " in out and "PYTHONPATH=/x" in out, out


def test_hosts_placement_and_hostfile_formats(tmp_path):
    assert mpi.place([("h0", 2), ("h1", 2)], 4) == [("h0", 2), ("h1", 2)]
    assert mpi.place([("h0", 2), ("h1", 2)], 3) == [("h0", 2), ("h1", 1)]     # fill in order
    assert mpi.place([("h0", None), ("h1", None)], 5) == [("h0", 3), ("h1", 2)]
    assert mpi.place([("h0", 1), ("h1", None)], 4) == [("h0", 1), ("h1", 3)]
    assert mpi.parse_hosts("localhost") == [("localhost", None)]
    hostfile = write(tmp_path / "hosts", "# cluster\nh0:2\nh1 slots=2 max_slots=4   # Open MPI's spelling\n\nh2\n")
    assert mpi.read_hostfile(hostfile) == [("h0", 2), ("h1", 2), ("h2", None)]
    script = write(tmp_path / "train.py", "")
    for args, message in [
        (["-n", "5", "-H", "h0:2,h1:2"], "-n 5 needs 5 slots, but the hosts give 4 (h0:2,h1:2)"),
        (["-n", "2", "-H", "h0:x"], "--hosts: 'h0:x' is not HOST or HOST:SLOTS"),
        (["-n", "2", "-H", "h0", "--hostfile", hostfile], "give --hosts or --hostfile, not both"),
    ]:
        rc, out, err, _ = dtrun("--dry-run", *args, script, cwd=tmp_path, timeout=60)
        assert rc == 1 and message in err and "Traceback" not in err, (args, err)
    bad = write(tmp_path / "bad", "h0 cpus=2\n")
    rc, out, err, _ = dtrun("--dry-run", "-n", "2", "--hostfile", bad, script, cwd=tmp_path, timeout=60)
    assert rc == 1 and f"--hostfile {bad}, line 1: 'h0 cpus=2': expected HOST, HOST:SLOTS or HOST slots=SLOTS" in err


def test_torchrun_style_command_lines(tmp_path):
    script = write(tmp_path / "train.py", "")
    base = _dry(tmp_path, "-n", "2", script, "--lr", "1")
    assert _dry(tmp_path, "-np", "2", script, "--lr", "1") == base
    assert _dry(tmp_path, "-n", "2", "python", script, "--lr", "1") == base         # the interpreter is dropped
    assert _dry(tmp_path, "-n", "2", sys.executable, script, "--lr", "1") == base
    argv = _dry(tmp_path, "-n", "2", "-m", "pkg.train", "--lr", "1", "-n", "7")
    assert argv[argv.index(sys.executable):] == [sys.executable, "-m", "mpi4py", "-m", "launch.rank", "module",
                                                 "pkg.train", "--lr", "1", "-n", "7"]
    assert _dry(tmp_path, "-np", "2", "python3", "-m", "pkg.train", "--lr", "1", "-n", "7") == argv
    # a script without .py whose #! line names Python is a script; other programs are refused with what to type
    tool = write(tmp_path / "tool", "#!/usr/bin/env python3\nprint(1)\n")
    argv = _dry(tmp_path, "-n", "2", tool)
    assert argv[-2:] == ["script", tool]
    write(tmp_path / "run.sh", "#!/bin/sh\necho hi\n")
    rc, out, err, _ = dtrun("-n", "2", "run.sh", cwd=tmp_path, timeout=60)
    assert rc == 2 and "must be a config (.toml) or a Python script (.py)" in err
    assert "dtrun -n N -m package.module" in err and "mpiexec -n N run.sh" in err
    rc, out, err, _ = dtrun("-n", "2", "python", "-c", "print(1)", cwd=tmp_path, timeout=60)
    assert rc == 2 and "give it the script or module" in err


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

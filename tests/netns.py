"""Network-namespace "hosts" for multi-host tests: real TCP between hosts on one machine.

`NetnsHosts(2)` makes namespaces ``dtns-<pid>-<k>-h0`` and ``...-h1`` joined by a
veth pair (``veth0`` in each, 10.77.0.1 and 10.77.0.2, host names ``h0``/``h1`` in
their /etc/hosts). ``tests/nsexec.sh`` runs a command on a host the way ssh would
(it is mpiexec's launcher-exec), in the host's own UTS namespace so that its
hostname is its name (Open MPI identifies nodes by hostname).

Namespaces share /dev/shm, so MPI must be forced onto TCP or it silently uses shared
memory between "hosts"; `veth_bytes()` proves that traffic crossed.

Clean-up: `kill_all()` SIGKILLs every process in the namespaces by PID; `close()`
does that and deletes the namespaces and their /etc/netns files. `sweep_stale()`
removes namespaces left by a test process that died (its pid is in the name).
"""
import json
import os
import re
import shlex
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NSEXEC = os.path.join(HERE, "nsexec.sh")
PREFIX = "dtns-"
SUBNET = "10.77.0"
_counter = [0]


def _ip(*args, check=True):
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def unavailable():
    """Why namespace hosts cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "mount"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            return f"{tool} is not installed"
    name = f"{PREFIX}{os.getpid()}-probe"
    p = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if p.returncode:
        return f"cannot create a network namespace: {p.stderr.strip()}"
    try:
        p = subprocess.run(["ip", "netns", "exec", name, "unshare", "--uts", "hostname", "probe"],
                           capture_output=True, text=True)
        if p.returncode:
            return f"cannot create a UTS namespace: {p.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ns_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def _destroy(ns):
    for _ in range(20):
        pids = _ns_pids(ns)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["rm", "-rf", f"/etc/netns/{ns}"], capture_output=True)


def sweep_stale():
    """Delete namespaces of this harness whose creating process is gone."""
    for line in _ip("netns", "list", check=False).splitlines():
        m = re.match(rf"({re.escape(PREFIX)}(\d+)-\S+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):     # its maker is gone
            _destroy(m.group(1))


class NetnsHosts:
    def __init__(self, n=2):
        if n != 2:
            raise ValueError("NetnsHosts: only 2 hosts (one veth pair) are supported")
        sweep_stale()
        _counter[0] += 1
        self.prefix = f"{PREFIX}{os.getpid()}-{_counter[0]}-"
        self.names = [f"h{i}" for i in range(n)]
        self.namespaces = []
        try:
            for h in self.names:
                ns = self.prefix + h
                _ip("netns", "add", ns)
                self.namespaces.append(ns)
                os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
                with open(f"/etc/netns/{ns}/hosts", "w") as f:
                    f.write("127.0.0.1 localhost\n")
                    f.writelines(f"{SUBNET}.{i + 1} {name}\n" for i, name in enumerate(self.names))
            a, b = self.namespaces
            _ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b)
            for i, ns in enumerate(self.namespaces):
                _ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "veth0")
                # IPv4 only: a veth's IPv6 address is "tentative" for a while after the link comes
                # up, and libfabric's tcp provider failed to start on it (ep_enable: Bad file descriptor)
                subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; "
                                "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"], capture_output=True)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", "veth0", "up")
            self._wait_link_up()
        except BaseException:
            self.close()
            raise

    def _wait_link_up(self, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            states = [json.loads(_ip("-n", ns, "-j", "link", "show", "veth0"))[0].get("operstate")
                      for ns in self.namespaces]
            if all(s == "UP" for s in states):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the veth link between {self.namespaces} did not come up: {states}")

    # -- running ---------------------------------------------------------------
    def env(self, noshare=(), noshare_dir=None):
        """Environment for nsexec.sh (and for mpiexec, which passes it on to nsexec.sh)."""
        env = dict(os.environ, DT_NETNS_PREFIX=self.prefix)
        if noshare:
            env["DT_NETNS_NOSHARE"] = " ".join(noshare)
            env["DT_NETNS_NOSHARE_DIR"] = noshare_dir
        return env

    def command(self, host, argv):
        """argv run on `host` through nsexec.sh (one shell-quoted string, as ssh takes it)."""
        return [NSEXEC, host, shlex.join([str(a) for a in argv])]

    def popen(self, host, argv, env=None, **kw):
        return subprocess.Popen(self.command(host, argv), env=env or self.env(), **kw)

    def run(self, host, argv, env=None, timeout=60, **kw):
        return subprocess.run(self.command(host, argv), env=env or self.env(), timeout=timeout, **kw)

    # -- inspecting and breaking -------------------------------------------------
    def pids(self, host=None):
        hosts = [host] if host else self.names
        return [p for h in hosts for p in _ns_pids(self.prefix + h)]

    def processes(self, host=None):
        """{pid: command line} of the processes running on `host` (all hosts if None)."""
        out = {}
        for pid in self.pids(host):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out[pid] = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            except OSError:
                pass
        return out

    def veth_bytes(self, host="h0"):
        """(rx_bytes, tx_bytes) of `host`'s end of the veth pair."""
        info = json.loads(_ip("-n", self.prefix + host, "-s", "-j", "link", "show", "veth0"))[0]
        stats = info["stats64"]
        return stats["rx"]["bytes"], stats["tx"]["bytes"]

    def link(self, up, host="h0"):
        _ip("-n", self.prefix + host, "link", "set", "veth0", "up" if up else "down")
        if up:
            self._wait_link_up()

    # -- clean-up -------------------------------------------------------------------
    def kill_all(self):
        for ns in self.namespaces:
            for pid in _ns_pids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def close(self):
        for ns in self.namespaces:
            _destroy(ns)
        self.namespaces = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

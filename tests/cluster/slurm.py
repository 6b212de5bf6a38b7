"""A throwaway Slurm cluster on this machine, for tests: munged, slurmctld and one slurmd per node.

Every daemon runs in the foreground as a child of the test process, with its PID recorded, its own
random free port and its own files under one state directory, so two runs on one machine cannot
collide and ``stop()`` can always find what it started. All traffic stays on 127.0.0.0/8.

Each node's slurmd runs in a mount namespace of its own with a private tmpfs on /tmp, so each "node"
mounts images for itself (as real nodes with node-local /tmp do) and a mount left behind by a killed
job never reaches this machine's mount table. Everything a node runs (slurmstepd, tasks, FUSE daemons)
inherits that namespace; ``stop()`` kills every process still in it, which also drops its mounts.

Facts measured here (Debian 12, Slurm 22.05): proctrack/cgroup cannot start tasks, so
proctrack/linuxproc and task/none; a node declares more CPUs than the machine has
(SlurmdParameters=config_overrides) so 64 ranks fit on 2 cores; munged's key must be mode 0400 and
its socket directory world-executable; a failed task launch can hang srun, so every srun the tests
run has a timeout. Several slurmd on one host work: Debian's Slurm is built with multiple-slurmd
(`scontrol show config` says MULTIPLE_SLURMD = Yes), and each slurmd here has its own -N name,
NodeAddr (127.0.1.N), Port, spool directory (%n) and log, so nothing is shared but the machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import pathlib
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

# The state directory must not live under /tmp: every node mounts a private tmpfs there and could
# not see its slurm.conf, its spool directory or the test project.
STATE_PARENT = pathlib.Path(os.environ.get("CND_CLUSTER_STATE_PARENT", "/var/tmp"))
STATE_PREFIX = "cnd-slurm-"


class ClusterUnavailable(RuntimeError):
    """Slurm cannot be installed or started on this machine: the cluster tests skip with this reason."""


@dataclasses.dataclass
class Node:
    name: str
    addr: str  # NodeAddr: where slurmctld and srun reach this node's slurmd
    cpus: int = 256
    port: int = 0
    pid: int | None = None  # its `unshare`: in the node's mount namespace, outside its PID namespace
    ns: str | None = None  # its mount namespace, e.g. "mnt:[4026532179]"
    proc: subprocess.Popen | None = None

    def mountinfo(self) -> str:
        """The mount table as this node's processes see it (its own mount namespace)."""
        return pathlib.Path(f"/proc/{self.pid}/mountinfo").read_text()

    def mnt_namespace(self) -> str:
        return self.ns or os.readlink(f"/proc/{self.pid}/ns/mnt")


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``addr`` (the kernel's pick, so parallel runs do not collide)."""
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the child before exec: be killed when the test process dies, even by SIGKILL.

    SIGKILL, not SIGTERM: `unshare --fork` ignores SIGTERM while it waits for its child.
    """
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still "exists" for kill(0).
    with contextlib.suppress(OSError):
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def reap_leftovers() -> None:
    """Kill and remove the clusters of earlier runs whose test process is gone (killed before teardown)."""
    for state in STATE_PARENT.glob(STATE_PREFIX + "*"):
        try:
            owner = int((state / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        for record in state.glob("*.pidrec"):
            with contextlib.suppress(OSError, ValueError):
                pid, *ns = record.read_text().split()
                kill_cluster_processes(state, [int(pid)], ns[0] if ns else None)
        shutil.rmtree(state, ignore_errors=True)


def _mentions(pid: int, text: bytes) -> bool:
    """True if the process's command line or environment names ``text`` (our state directory)."""
    for part in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            if text in pathlib.Path(f"/proc/{pid}/{part}").read_bytes():
                return True
    return False


def processes_in_namespace(ns: str) -> list[int]:
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "ns" / "mnt") == ns:
                pids.append(int(entry.name))
    return pids


def kill_cluster_processes(state: pathlib.Path, pids: list[int], ns: str | None) -> None:
    """SIGKILL ``pids`` and every process in mount namespace ``ns``, all only if they are this cluster's.

    PIDs and namespace ids get reused: a recorded PID is killed only if its command line or
    environment names the cluster's state directory (every daemon's arguments do, every task's
    SLURM_CONF does, every FUSE daemon's image path does), and a namespace's processes only if one
    of them does.
    """
    marker = str(state).encode()
    victims = {pid for pid in pids if _mentions(pid, marker)}
    if ns and ns != os.readlink("/proc/self/ns/mnt"):
        members = processes_in_namespace(ns)
        if any(_mentions(pid, marker) for pid in members):
            victims.update(members)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)


class SlurmCluster:
    """munged + slurmctld + one slurmd per node, all started by ``start()`` and ended by ``stop()``."""

    def __init__(self, nodes: list[Node], partitions: dict[str, list[str]], default: str,
                 keep_visible: list[os.PathLike | str] = ()):
        """``keep_visible``: paths the tasks must see even if they lie under /tmp (the checkout, the venv)."""
        self.nodes = {n.name: n for n in nodes}
        self.keep_visible = sorted({pathlib.Path(os.path.realpath(p)) for p in keep_visible})
        self.partitions = partitions
        self.default_partition = default
        self.state = pathlib.Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=STATE_PARENT))
        self.conf = self.state / "slurm.conf"
        self.munge_socket = self.state / "munge" / "munge.socket"
        self.ctld_port = 0
        self.daemons: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        for var in [v for v in self.env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if var != "SLURM_CONF":
                del self.env[var]
        (self.state / "owner.pid").write_text(f"{os.getpid()}\n")

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        for tool in ("munged", "slurmctld", "slurmd", "srun", "sinfo"):
            if shutil.which(tool) is None:
                raise ClusterUnavailable(f"{tool} not on PATH: run scripts/install-slurm.sh as root")
        for sub in ("log", "ctld", "spool", "munge"):
            (self.state / sub).mkdir()
        self._start_munged()
        self.ctld_port = free_port()
        for node in self.nodes.values():
            node.port = free_port(node.addr)
        self._write_conf()
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])
        for node in self.nodes.values():
            self._start_slurmd(node)
        self.wait_idle(timeout)

    def stop(self) -> None:
        """End everything ``start()`` began, whatever state it is in; never raises."""
        with contextlib.suppress(Exception):
            subprocess.run(["scancel", "--full", "--quiet", "-u", "root"], env=self.env, timeout=10,
                           capture_output=True)
        for node in self.nodes.values():
            if node.pid is not None:
                kill_cluster_processes(self.state, [node.pid], node.ns)
        for _name, proc in reversed(self.daemons):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + 10
        for _name, proc in reversed(self.daemons):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not os.environ.get("CND_CLUSTER_KEEP"):
            shutil.rmtree(self.state, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.state / "log" / f"{name}.out", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=self.env, preexec_fn=die_with_parent)
        log.close()
        self.daemons.append((name, proc))
        # Recorded on disk too, so a later run can reap this one if the test process is SIGKILLed.
        (self.state / f"{name}.pidrec").write_text(f"{proc.pid}\n")
        return proc

    def _start_munged(self) -> None:
        munge = self.state / "munge"
        # munged insists: key readable by its owner only, socket directory searchable by all.
        munge.chmod(0o755)
        self.state.chmod(0o755)
        key = munge / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        self._spawn("munged", [
            "munged", "--foreground", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={munge / 'munged.pid'}", f"--log-file={self.state / 'log' / 'munged.log'}",
            f"--seed-file={munge / 'munged.seed'}",
        ])
        self._wait(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")

    def _start_slurmd(self, node: Node) -> None:
        (self.state / "spool" / node.name).mkdir()
        # A mount namespace of its own with a private /tmp: what this node's jobs mount stays its own.
        # A UTS namespace too, so `hostname` on the node says the node's name, as on a real cluster.
        # Paths under /tmp that the tasks need (a checkout or venv cloned there, as CI may do) are
        # carried over the new tmpfs: bind-mounted aside first, then back at the same path.
        keep = [p for p in self.keep_visible if p.is_relative_to("/tmp") and p != pathlib.Path("/tmp")]
        hold = self.state / "hold" / node.name
        aside = [f"mkdir -p {shlex.quote(str(hold / str(i)))} && mount --bind {shlex.quote(str(p))} "
                 f"{shlex.quote(str(hold / str(i)))}" for i, p in enumerate(keep)]
        back = [f"mkdir -p {shlex.quote(str(p))} && mount --bind {shlex.quote(str(hold / str(i)))} "
                f"{shlex.quote(str(p))}" for i, p in enumerate(keep)]
        script = " && ".join([
            f"hostname {node.name}", "mount --make-rprivate /", *aside,
            "mount -t tmpfs -o mode=1777,size=2g tmpfs /tmp", *back,
            f"exec slurmd -D -N {node.name} -f {shlex.quote(str(self.conf))}",
        ])
        # A PID namespace with its own /proc as well: a node sees its own processes only, as real
        # nodes do (cnd looks for the processes of a job step in /proc). unshare forks slurmd as the
        # namespace's PID 1 and stays outside it, in the node's mount namespace; when unshare dies
        # (even by the test process's death, see die_with_parent), --kill-child ends the whole node.
        proc = self._spawn(f"slurmd-{node.name}", [
            "unshare", "--mount", "--uts", "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", script])
        node.proc = proc
        node.pid = proc.pid
        self._wait(lambda: _slurmd_running(node) or proc.poll() is not None, 10,
                   f"slurmd {node.name} did not start")
        if proc.poll() is not None:
            raise ClusterUnavailable(f"slurmd {node.name} exited {proc.returncode}: {self.tail(f'slurmd-{node.name}.out')}")
        node.ns = os.readlink(f"/proc/{node.pid}/ns/mnt")
        (self.state / f"slurmd-{node.name}.pidrec").write_text(f"{proc.pid} {node.ns}\n")

    def _write_conf(self) -> None:
        s = self.state
        lines = [
            "ClusterName=cndtest",
            # The controller is reached on loopback only, whatever this host's name resolves to.
            f"SlurmctldHost={socket.gethostname().split('.')[0]}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={s / 'ctld'}",
            f"SlurmdSpoolDir={s / 'spool'}/%n",
            f"SlurmctldPidFile={s / 'ctld' / 'slurmctld.pid'}",
            f"SlurmdPidFile={s / 'spool'}/%n/slurmd.pid",
            f"SlurmctldLogFile={s / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={s / 'log'}/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # proctrack/cgroup cannot start tasks on this machine kind (measured); linuxproc can.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SwitchType=switch/none",
            "MpiDefault=none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            # Believe the CPUs declared below, not the 2 cores of this machine.
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "PropagateResourceLimits=NONE",
            "KillWait=2",
            "MessageTimeout=20",
            "SlurmdTimeout=120",
            "InactiveLimit=0",
            "MinJobAge=60",
        ]
        for node in self.nodes.values():
            lines.append(f"NodeName={node.name} NodeAddr={node.addr} NodeHostname={node.name} "
                         f"Port={node.port} CPUs={node.cpus} RealMemory=1000 State=UNKNOWN")
        for name, members in self.partitions.items():
            default = "YES" if name == self.default_partition else "NO"
            lines.append(f"PartitionName={name} Nodes={','.join(members)} Default={default} "
                         "MaxTime=INFINITE State=UP OverSubscribe=YES")
        self.conf.write_text("\n".join(lines) + "\n")

    # -- queries --------------------------------------------------------------------------------------

    @property
    def default_node(self) -> str:
        return self.partitions[self.default_partition][0]

    def processes(self, node: Node) -> list[int]:
        """Every process running on ``node`` (in its mount namespace), slurmd included."""
        return processes_in_namespace(node.mnt_namespace())

    def fuse_daemons(self, node: Node) -> list[int]:
        """Processes on ``node`` holding /dev/fuse open: the daemons serving its FUSE mounts."""
        found = []
        for pid in self.processes(node):
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/fuse" for fd in os.listdir(f"/proc/{pid}/fd")):
                    found.append(pid)
        return found

    def node_states(self) -> dict[str, str]:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True,
                             text=True, timeout=20)
        states = {}
        for line in out.stdout.splitlines():
            name, state = line.split()
            states[name] = state
        return states

    def wait_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.daemons:
                if proc.poll() is not None:
                    raise ClusterUnavailable(
                        f"{name} exited {proc.returncode}: {self.tail(name + '.out')} {self.logs_tail()}")
            with contextlib.suppress(subprocess.SubprocessError, ValueError):
                states = self.node_states()
                if set(states) == set(self.nodes) and all(s == "idle" for s in states.values()):
                    return
            time.sleep(0.3)
        raise ClusterUnavailable(f"nodes not idle after {timeout:.0f} s: {self.node_states()} {self.logs_tail()}")

    def tail(self, logname: str, lines: int = 15) -> str:
        path = self.state / "log" / logname
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def logs_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{self.tail(p.name)}" for p in sorted((self.state / "log").iterdir()))

    @staticmethod
    def _wait(predicate, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise ClusterUnavailable(message)

    # -- running jobs ---------------------------------------------------------------------------------

    def run(self, argv: list[str], timeout: float, cwd: str | os.PathLike | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a Slurm client command (srun, sbatch, ...) with this cluster's SLURM_CONF and a timeout.

        A task launch failure can hang srun forever, or let it exit 0: on timeout the whole process
        group is killed and the step cancelled, then TimeoutExpired is raised.
        """
        proc = subprocess.Popen(argv, env={**self.env, **(env or {})}, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            subprocess.run(["scancel", "--quiet", "-u", "root"], env=self.env, timeout=10, capture_output=True)
            raise subprocess.TimeoutExpired(argv, timeout, out, err) from None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def sbatch(self, script: os.PathLike, options: list[str], timeout: float) -> tuple[str, int]:
        """Submit SCRIPT and wait for the job: (its final state, its exit code).

        Like `sbatch --wait`, but polls every 0.2 s instead of sbatch's growing intervals (seconds).
        """
        submitted = self.run(["sbatch", "--parsable", *options, str(script)], 30)
        if submitted.returncode != 0:
            raise RuntimeError(f"sbatch failed: {submitted.stderr}")
        job = submitted.stdout.strip().split(";")[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.run(["scontrol", "-o", "show", "job", job], 30).stdout
            fields = dict(f.split("=", 1) for f in shown.split() if "=" in f)
            state = fields.get("JobState", "")
            if state and state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
                return state, int(fields.get("ExitCode", "0:0").split(":")[0])
            time.sleep(0.2)
        self.run(["scancel", job], 30)
        raise subprocess.TimeoutExpired(["sbatch", str(script)], timeout)


def _slurmd_running(node: Node) -> bool:
    """True once the node has set up its namespaces and exec'd slurmd in them."""
    try:
        ns = os.readlink(f"/proc/{node.pid}/ns/mnt")
    except OSError:
        return False
    if ns == os.readlink("/proc/self/ns/mnt"):
        return False
    for pid in processes_in_namespace(ns):
        with contextlib.suppress(OSError):
            if pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == "slurmd":
                return True
    return False

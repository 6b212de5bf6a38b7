"""The holder of a private mount: the process that makes a user and mount namespace (userns.py),
mounts the image there with either FUSE backend, publishes its record (records.py), and stays while
commands use the namespace. It cannot outlive them: it leaves once no process is in its namespace
any more (after LINGER seconds, so that back-to-back commands share it), or, inside a Slurm job step,
once no task of the step runs on the node (a watcher in the host's namespaces tells it). When it is
killed its daemon follows (PR_SET_PDEATHSIG), the kernel drops the mount with the last process, and
a janitor forked before the namespace removes the record and the mount point directory.
"""

from __future__ import annotations

import fcntl
import os
import time

from condainer.errors import CondainerError, MountError
from condainer.node import records
from condainer.node.records import Lock, Record, start_time, tidy_registry, unlink
from condainer.project.layout import Layout
from condainer.sysinfo import die_with_parent

LINGER_SECONDS = 5.0  # an idle namespace waits this long for the next command (CONDAINER_NS_LINGER)
POLL_SECONDS = 0.5  # how often the holder counts the processes in its namespace
GRACE_SECONDS = 1.0  # after retiring, the time a command that read the record has to join
READY_SECONDS = 10.0


def start(layout: Layout, backend: str, record_path: str, wanted_image: str) -> Record:
    """Fork the holder (twice: it must not be a child of the command we become) and wait until it
    reports its mount ready; its one-line failure becomes ours. Call under the record's lock."""
    from condainer.backends.select import choose_mounter

    choice = choose_mounter(backend)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; its outcome is reported through the pipe
        os.close(rfd)
        code = 1
        try:
            if os.fork() == 0:
                code = main(layout, choice.backend, choice.tool, record_path, wanted_image, wfd)
            else:
                code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    os.waitpid(pid, 0)
    try:
        message = _read_line(rfd, READY_SECONDS + 5)
    finally:
        os.close(rfd)
    record = Record.read(record_path)
    if message != "ok" or record is None:
        raise MountError(message or f"the holder of the private mount of {layout.image} did not start")
    return record


def _read_line(fd: int, timeout: float) -> str:
    import select

    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return "the holder of the private mount did not answer in time"
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode(errors="replace").strip()


def _detach(keep: int) -> None:
    """Leave the caller's session, terminal, working directory and descriptors but KEEP (a pipe
    the holder kept open would make `$(bin/python ...)` wait for it)."""
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    _close_all_but(keep)


def _close_all_but(*keep: int) -> None:
    """Close every descriptor from 3 up but KEEP (a forked process must not hold its parent's
    pipes, locks or the command's descriptors)."""
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _fd_limit())


def _fd_limit() -> int:
    try:
        import resource

        return min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 65536)
    except (ImportError, ValueError, OSError):
        return 1024


def _hold_mountpoint_dir(path: str) -> int:
    """Make (mode 0755: every user of the project needs this path) or accept the mount point
    directory on the host, and hold a shared flock on it while we mount there: its owner removes
    it only under an exclusive one, which would otherwise detach our mount."""
    import stat

    for _ in range(5):
        try:
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)  # whatever our umask: every user of the project mounts here
        except FileExistsError:
            pass
        except OSError as exc:
            raise MountError(f"cannot create mount point {path}: {exc.strerror}") from None
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise MountError(f"mount point {path} is not a directory: refusing to use it")
        if st.st_mode & 0o022:
            raise MountError(f"mount point {path} is writable by others: refusing to use it")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise MountError(f"mount point {path} cannot be opened ({exc.strerror}): uid {st.st_uid} uses it "
                             "outside a private namespace (cnd mount, source ./activate); wait until it is "
                             "unmounted") from None
        fcntl.flock(fd, fcntl.LOCK_SH)
        held = os.fstat(fd)
        if held.st_nlink and (held.st_dev, held.st_ino) == (st.st_dev, st.st_ino):
            return fd
        os.close(fd)  # removed by its owner while we waited: make it again
    raise MountError(f"mount point {path} keeps disappearing")


def _start_janitor(dir_fd: int, path: str, record_path: str) -> int:
    """Fork, before the holder enters its namespace, the process that tidies up once the holder is
    gone, however it ended (a SIGKILL included: the pipe it waits on then reaches end of file).
    It works from the host's namespace, where removing a directory that is a mount point fails:
    from inside ours it would detach another user's (or a host) mount there. It drops the holder's
    record if it is still there, and removes the mount point directory if it is ours, once no
    holder of any user mounts there (an exclusive flock on it)."""
    holder = os.getpid()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid != 0:
        os.close(rfd)
        return pid  # the holder keeps WFD (close-on-exec: its daemon does not) until it ends
    code = 0
    try:  # pragma: no cover - the janitor
        import signal

        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)  # it ends when the holder has ended, or by SIGKILL
        os.close(wfd)
        _close_all_but(rfd, dir_fd)
        while os.read(rfd, 4096):
            pass
        with Lock(record_path + ".lock"):
            record = Record.read(record_path)
            if record is not None and record.pid == holder:
                unlink(record_path)
        tidy_registry(record_path)
        held = os.fstat(dir_fd)
        if held.st_uid == os.geteuid():
            fcntl.flock(dir_fd, fcntl.LOCK_EX)
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                os.rmdir(path)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _spawn_daemon(backend: str, tool: str, image: str, mountpoint: str, log_path: str):
    """Start the FUSE daemon in the namespace, in the foreground, keeping CAP_SYS_ADMIN to mount by
    itself; it gets SIGTERM if we die. Without default_permissions: in a namespace only this user
    can reach the mount, and reads what the image holds (they can read the image file itself), while
    other users' uids and groups show as nobody, so the kernel's mode checks would lock them out."""
    import signal
    import subprocess
    import sys


    env = dict(os.environ)
    if backend == "python":
        cmd = [sys.executable, "-m", "condainer.fs.fuse", "--log", log_path, image, mountpoint]
        from condainer import package_root

        root = package_root()
        env["PYTHONPATH"] = os.pathsep.join(p for p in [root, env.get("PYTHONPATH", "")] if p)
        env["CONDAINER_FUSE_DEFAULT_PERMISSIONS"] = "0"
    else:
        cmd = [tool, "-f", "-o", "ro,nosuid,nodev", image, mountpoint]
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd="/",
                                close_fds=True, preexec_fn=lambda: die_with_parent(signum=signal.SIGTERM))


def _wait_mounted(proc, mountpoint: str, log_path: str, log_start: int) -> str:
    """'ok' once MOUNTPOINT answers in our namespace, else the daemon's last line."""
    from condainer import mounts

    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        entry = mounts.find_mount(mountpoint)
        if entry is not None and mounts.is_fuse(entry):
            try:
                os.statvfs(mountpoint)
                return "ok"
            except OSError:
                pass
        if proc.poll() is not None:
            return _last_line(log_path, log_start) or f"the FUSE daemon exited with status {proc.returncode}"
        time.sleep(0.005)
    return f"{mountpoint} did not become ready within {READY_SECONDS:.0f} s"


def _last_line(log_path: str, start: int) -> str:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(start)
            lines = [line.strip() for line in fh.read(65536).decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    if not lines:
        return ""
    last = lines[-1]
    # Our daemon's log lines start with a time stamp and "PID MOUNTPOINT: "; keep the message.
    return last.split(": ", 1)[1] if last[:4].isdigit() and ": " in last else last


def _users(own: set[int], namespace: str) -> int:
    """How many processes (we may see) are in NAMESPACE, besides OWN."""
    from condainer.node import userns

    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) not in own and userns.mount_namespace(name) == namespace:
            count += 1
    return count


def main(layout: Layout, backend: str, tool: str, record_path: str, wanted_image: str,
                 ready_fd: int) -> int:  # pragma: no cover - a forked process; tested end to end
    """The holder: namespace, mount, record, then wait for the users to go; report to READY_FD."""
    import signal

    from condainer.fs.atomic import write_atomically
    from condainer.node import userns
    from condainer.node.sessions import NodeSessions
    from condainer.project.layout import log_dir

    sessions = NodeSessions(layout.state_dir, layout.uuid)  # for its log lines only

    def report(line: str) -> None:
        try:
            os.write(ready_fd, (" ".join(line.split()) + "\n").encode())
        except OSError:
            pass

    mp = layout.mountpoint
    proc = None
    dir_fd = -1
    step_fd = None
    published = False
    try:
        _detach(ready_fd)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.default_int_handler)
        signal.signal(signal.SIGUSR1, _retire_soon)  # `cnd umount`: no new users, the present ones stay
        dir_fd = _hold_mountpoint_dir(mp)
        janitor = _start_janitor(dir_fd, mp, record_path)
        step_fd = _watch_step(janitor)
        userns.enter_new(os.getuid(), os.getgid())
        userns.keep_mount_capability()
        logs = log_dir()
        os.makedirs(logs, mode=0o700, exist_ok=True)
        log_path = os.path.join(logs, "fuse.log")
        try:
            log_start = os.path.getsize(log_path)
        except OSError:
            log_start = 0
        started = time.monotonic()
        proc = _spawn_daemon(backend, tool, layout.image, mp, log_path)
        state = _wait_mounted(proc, mp, log_path, log_start)
        if state != "ok":
            report(f"cannot mount {layout.image} in a private namespace: {state}")
            return 1
        me = os.getpid()
        write_atomically(record_path, Record(me, start_time(me) or "", wanted_image, mp).line().encode(), mode=0o600)
        _keep_open(record_path)
        published = True
        sessions.log_mount(f"{backend} mode=namespace", time.monotonic() - started)
        report("ok")
        os.close(ready_fd)
        ready_fd = -1
        _serve_users(layout, record_path, proc, userns.mount_namespace(), step_fd)
    except KeyboardInterrupt:
        pass
    except CondainerError as exc:
        report(exc.message)
    except OSError as exc:
        report(f"cannot mount {layout.image} in a private namespace: {exc.strerror or exc}")
    except BaseException as exc:
        report(f"the holder of the private mount failed: {type(exc).__name__}: {exc}")
    finally:
        if published:
            _retire(record_path)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except Exception:
                proc.kill()
        if published:
            sessions.log_unmount("holder mode=namespace")
        if dir_fd >= 0:
            os.close(dir_fd)  # the janitor removes the directory once we are gone (_start_janitor)
    return 0


_RETIRE = []


def _keep_open(record_path: str) -> None:
    """Hold our record open on records.RECORD_FD (see there), not inherited by anything we start."""
    fd = os.open(record_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if fd != records.RECORD_FD:
        os.dup2(fd, records.RECORD_FD, inheritable=False)
        os.close(fd)


def _retire_soon(_signum, _frame) -> None:
    _RETIRE.append(True)


def _serve_users(layout: Layout, record_path: str, proc, namespace: str | None, step_fd: int | None) -> None:
    """Wait while the namespace has users (or, inside a job step, while a task of the step runs on
    this node: ranks start and end unevenly); retire after LINGER idle seconds, at once when a newer
    holder took our record (a rebuilt image) or `cnd umount` asked (SIGUSR1), then wait for the
    last user to go."""
    if namespace is None:
        return
    linger = float(os.environ.get("CONDAINER_NS_LINGER", LINGER_SECONDS))
    grace = min(GRACE_SECONDS, linger)
    own = {os.getpid(), proc.pid}
    last_used = time.monotonic()
    retired_at = None
    step_runs = step_fd is not None
    while proc.poll() is None:
        time.sleep(min(POLL_SECONDS, max(linger, 0.05)))
        now = time.monotonic()
        if step_fd is not None:
            step_runs = _step_news(step_fd, step_runs)
        if retired_at is None:
            ours = Record.read(record_path)
            if _RETIRE or ours is None or ours.pid != os.getpid():
                _retire(record_path)
                retired_at = now
                continue
        if _users(own, namespace) or (retired_at is None and step_runs):
            last_used = now
            continue
        if retired_at is None:
            if now - last_used >= linger:
                _retire(record_path)
                retired_at = now
        elif now - retired_at >= grace:
            return


def _watch_step(janitor: int) -> int | None:
    """Inside a Slurm job step, fork a watcher that stays in the host's namespaces (from inside
    ours, other processes cannot be inspected) and says through a pipe whether a process of the step
    runs on this node outside our namespace (1) or none does (0), leaving out our JANITOR (which has
    the step's environment too); it dies with us. Returns the pipe's end to read, or None outside a
    step."""

    job, step = os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_STEP_ID")
    if not (job and step):
        return None
    holder = os.getpid()
    rfd, wfd = os.pipe()
    if os.fork() == 0:  # pragma: no cover - the watcher
        code = 0
        try:
            from condainer.node import slurm, userns

            die_with_parent()
            _close_all_but(wfd)
            said = None
            here = userns.mount_namespace()
            while os.getppid() == holder:
                ours = userns.mount_namespace(holder)
                if ours == here:  # the holder has not made its namespace yet: nothing to tell apart
                    time.sleep(0.01)
                    continue
                running = any(userns.mount_namespace(pid) != ours
                              for pid in slurm.other_step_processes(f"{job}.{step}") if pid != janitor)
                if running != said:
                    os.write(wfd, b"1" if running else b"0")
                    said = running
                time.sleep(POLL_SECONDS)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    os.set_blocking(rfd, False)
    return rfd


def _step_news(fd: int, before: bool) -> bool:
    """The watcher's latest word (see _watch_step); False once it is gone."""
    try:
        data = os.read(fd, 4096)
    except BlockingIOError:
        return before
    except OSError:
        return False
    return data[-1:] == b"1" if data else False


def _retire(record_path: str) -> None:
    """Stop taking new users: remove our record (under its lock) if it is still ours."""
    with Lock(record_path + ".lock"):
        record = Record.read(record_path)
        if record is not None and record.pid == os.getpid():
            unlink(record_path)

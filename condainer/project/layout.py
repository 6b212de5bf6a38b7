"""Where a project's image, mount point and node-local state live, and a cache of the condainer.yml
values that say so.

Every rank of a job runs `cnd exec`, and each one would import PyYAML to read five values out of
condainer.yml. Instead, a full load of condainer.yml (config.load) leaves ``.condainer-exec`` beside
it: those values followed by the exact text they were parsed from. The per-rank path reads both
files and uses the values only when the text still matches byte for byte, so an edit of
condainer.yml is never ignored. Standard library only (os): this module is on that per-rank path,
and so is its small-file reader (read_file), which the rest of cnd shares.
"""

import os

CONFIG_NAME = "condainer.yml"
CACHE_NAME = ".condainer-exec"
_CACHE_FORMAT = "condainer exec cache 1"
_SEPARATOR = "\n--- condainer.yml ---\n"
# The values condainer.yml's backend and mount_mode take: checked by config.py, offered by the
# command line, and by entry.py's reading of `cnd exec` (which must not import more than this).
BACKENDS = ("auto", "native", "python")
MOUNT_MODES = ("auto", "namespace", "host")
DEFAULT_BACKEND = DEFAULT_MOUNT_MODE = "auto"
DEFAULT_MOUNT_BASE = "/tmp"  # node-local on a cluster; cnd leaves nothing of its own in it
_FIELDS = ("uuid", "mount_base_directory", "multiuser_mountpoint", "user_env_name", "backend", "mount_mode")


def hostname() -> str:
    """The short host name (what gethostname gives, without importing socket)."""
    return os.uname().nodename.split(".")[0]


def log_dir() -> str:
    """Where condainer's logs go (the FUSE daemon's, mounts and unmounts): $CONDAINER_LOG_DIR, else
    the user's cache directory. Never the node's /tmp, which cnd leaves clean."""
    base = os.environ.get("CONDAINER_LOG_DIR")
    if base:
        return base
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "condainer")


def unset_variable(value: str) -> str | None:
    """The first $NAME or ${NAME} in VALUE that is not set, or None: os.path.expandvars would leave
    it in the path and we would build under a directory literally named "$TMPDIR"."""
    i = value.find("$")
    while i != -1:
        rest = value[i + 1 :]
        if rest.startswith("{"):
            end = rest.find("}")
            name = rest[1:end] if end > 0 else ""
        else:
            n = 0
            while n < len(rest) and (rest[n].isalnum() or rest[n] == "_"):
                n += 1
            name = rest[:n]
        if name and (name.replace("_", "a").isalnum()) and name not in os.environ:
            return name
        i = value.find("$", i + 1)
    return None


def expand_base(value: str) -> str:
    """mount_base_directory with ~ and $VARS expanded (call unset_variable first)."""
    return os.path.expandvars(os.path.expanduser(value))


class Layout:
    """The paths of one project on this node, for this user (plain strings: no pathlib on the
    per-rank path)."""

    __slots__ = ("directory", "uuid", "mount_base", "multiuser", "user_env_name", "backend", "mount_mode")

    def __init__(self, directory: str, uuid: str, mount_base: str, *, multiuser: bool = False,
                 user_env_name: str = "", backend: str = DEFAULT_BACKEND,
                 mount_mode: str = DEFAULT_MOUNT_MODE) -> None:
        self.directory = directory
        self.uuid = uuid
        self.mount_base = mount_base
        self.multiuser = multiuser
        self.user_env_name = user_env_name
        self.backend = backend
        self.mount_mode = mount_mode  # auto, namespace or host (node/mount_mode.py)

    def backend_for(self, requested: str | None) -> str:
        """The backend a command uses: REQUESTED (--backend), else condainer.yml's."""
        return requested or self.backend

    @property
    def image(self) -> str:
        """The image, ``<uuid>.squashfs`` in the project directory (upstream's convention)."""
        return os.path.join(self.directory, f"{self.uuid}.squashfs")

    @property
    def mountpoint(self) -> str:
        """The staging directory at build time and the mount point afterwards: the same path."""
        suffix = f"-{os.getuid()}" if self.multiuser else ""
        return os.path.join(self.mount_base, f"condainer-{self.uuid}{suffix}")

    @property
    def state_dir(self) -> str:
        """Per-node, per-user state beside the mount point (lock, running execs, Slurm steps)."""
        return os.path.join(self.mount_base, f".condainer-{self.uuid}-{os.getuid()}-{hostname()}")

    @property
    def env_prefix(self) -> str:
        """The environment to activate: the mount point, or the nested envs/<user_env_name> of an image
        built by upstream Condainer (when the mounted image has it; `cnd build` ignores the key)."""
        mp = self.mountpoint
        if self.user_env_name:
            nested = os.path.join(mp, "envs", self.user_env_name)
            if os.path.isdir(nested):
                return nested
        return mp


def read_file(path: str) -> bytes | None:
    """PATH's bytes, or None when it cannot be read: one open and no fstat (open() would add two),
    for the small files every rank reads (here, in mounts.py and sessions.py)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def cached(directory: str) -> Layout | None:
    """The layout from the cache, or None when there is no cache, it belongs to another text of
    condainer.yml or another condainer version, or a variable of mount_base_directory is unset (the
    full load then says what is wrong)."""
    text = read_file(os.path.join(directory, CONFIG_NAME))
    cache = read_file(os.path.join(directory, CACHE_NAME))
    if text is None or cache is None:
        return None
    head, sep, source = cache.partition(_SEPARATOR.encode())
    if not sep or source != text:
        return None
    lines = head.decode("utf-8", "surrogateescape").split("\n")
    from condainer import __version__

    if lines[0] != f"{_CACHE_FORMAT} {__version__}":
        return None
    values = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    if any(key not in values for key in _FIELDS):
        return None
    base = values["mount_base_directory"]
    if unset_variable(base) is not None:
        return None
    return Layout(directory, values["uuid"], expand_base(base), multiuser=values["multiuser_mountpoint"] == "1",
                  user_env_name=values["user_env_name"], backend=values["backend"],
                  mount_mode=values["mount_mode"])


def write_cache(directory: str, text: bytes, raw: dict) -> None:
    """Record RAW (condainer.yml's values as written, validated) for the exact TEXT they were parsed
    from. Best effort: a project directory we may not write (a shared one) only misses the cache."""
    values = {
        "uuid": str(raw["uuid"]),
        "mount_base_directory": str(raw.get("mount_base_directory") or DEFAULT_MOUNT_BASE),
        "multiuser_mountpoint": "1" if raw.get("multiuser_mountpoint") else "0",
        "user_env_name": str(raw.get("user_env_name") or ""),
        "backend": str(raw.get("backend") or DEFAULT_BACKEND),
        "mount_mode": str(raw.get("mount_mode") or DEFAULT_MOUNT_MODE),
    }
    if any("\n" in v or "\r" in v for v in values.values()):
        return  # cannot be written as one line: the full load runs every time
    from condainer import __version__

    head = "\n".join([f"{_CACHE_FORMAT} {__version__}", *(f"{k}={values[k]}" for k in _FIELDS)])
    data = head.encode("utf-8", "surrogateescape") + _SEPARATOR.encode() + text
    path = os.path.join(directory, CACHE_NAME)
    if read_file(path) == data:
        return
    try:
        from condainer.fs.atomic import write_atomically  # not on the per-rank path: a full load

        write_atomically(path, data)
    except OSError:
        pass

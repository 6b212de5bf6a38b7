"""A tiny local conda channel built by the tests themselves (no conda channel is reachable here).

Packages are noarch, packed with conda-package-handling and indexed with py-rattler, as a real
channel would be; one carries a file with the prefix placeholder and an activate.d script.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


def make_package(channel: Path, name: str, version: str, files: dict[str, str], *,
                 depends: list[str] | None = None, text_prefix: set[str] = frozenset()) -> None:
    """Write NAME-VERSION-0.tar.bz2 into CHANNEL/noarch; FILES maps relative paths to contents."""
    from conda_package_handling import api

    stage = channel.parent / f"stage-{name}-{version}"
    (stage / "info").mkdir(parents=True)
    paths = []
    for rel, content in files.items():
        target = stage / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        if rel.startswith("bin/"):
            target.chmod(0o755)
        entry = {"_path": rel, "path_type": "hardlink",
                 "sha256": hashlib.sha256(content.encode()).hexdigest(), "size_in_bytes": len(content.encode())}
        if rel in text_prefix:
            entry.update(file_mode="text", prefix_placeholder=PLACEHOLDER)
        paths.append(entry)
    index = {"name": name, "version": version, "build": "0", "build_number": 0, "depends": depends or [],
             "noarch": "generic", "subdir": "noarch", "timestamp": int(time.time() * 1000), "license": "MIT"}
    (stage / "info" / "index.json").write_text(json.dumps(index))
    (stage / "info" / "paths.json").write_text(json.dumps({"paths": paths, "paths_version": 1}))
    (stage / "info" / "files").write_text("\n".join(files) + "\n")
    if text_prefix:
        (stage / "info" / "has_prefix").write_text(
            "".join(f"{PLACEHOLDER} text {p}\n" for p in sorted(text_prefix)))
    out = channel / "noarch"
    out.mkdir(parents=True, exist_ok=True)
    rels = ["info/index.json", "info/paths.json", "info/files", *files]
    if text_prefix:
        rels.append("info/has_prefix")
    api.create(str(stage), rels, f"{name}-{version}-0.tar.bz2", out_folder=str(out))


def index(channel: Path) -> None:
    import rattler.index

    asyncio.run(rattler.index.index_fs(channel))


def build_demo_channel(channel: Path) -> Path:
    """hello (placeholder file, activate.d script, a command) depending on greet."""
    make_package(channel, "greet", "1.0", {"share/greet/greeting.txt": "hello from greet\n"})
    make_package(
        channel, "hello", "1.0",
        {
            "bin/hello": "#!/bin/sh\necho \"hello from $0\"\n",
            "share/hello/prefix.txt": f"prefix={PLACEHOLDER}\n",
            "etc/conda/activate.d/hello.sh": "export HELLO_ACTIVE=1\n",
            "etc/conda/deactivate.d/hello.sh": "unset HELLO_ACTIVE\n",
        },
        depends=["greet"],
        text_prefix={"share/hello/prefix.txt"},
    )
    index(channel)
    return channel


def build_virtual_channel(channel: Path) -> Path:
    """Packages that need virtual packages this machine lacks: needs-cuda (__cuda >=12, and no GPU
    here) and needs-glibc (__glibc >=99, far beyond any real glibc)."""
    make_package(channel, "needs-cuda", "1.0", {"share/needs-cuda/info.txt": "built for a GPU\n"},
                 depends=["__cuda >=12"])
    make_package(channel, "needs-glibc", "1.0", {"share/needs-glibc/info.txt": "built for glibc 99\n"},
                 depends=["__glibc >=99"])
    index(channel)
    return channel

#!/usr/bin/env python3
"""A stand-in for micromamba, mamba (>= 2) and conda, for tests on machines without them.

It models the parts of their contract that `cnd build` relies on, including the traps:
- `create` into an existing directory that is not a conda environment (no conda-meta/) aborts
  with "Non-conda folder exists at prefix" (micromamba, mamba >= 2); into an environment, it asks
  "Overwrite?" and, on yes, deletes the whole prefix first;
- `install` needs an existing environment; mamba asks "Confirm changes" before any change, and
  with stdin not a terminal only --yes or MAMBA_ALWAYS_YES/CONDA_ALWAYS_YES say yes;
- `env update` creates the prefix if missing and installs into it in place;
- `--file` may be an @EXPLICIT list (`URL#SHA256` lines), installed as it is, unsolved.
"Installing" a package NAME writes conda-meta/NAME-1.0-0.json and an executable bin/NAME-hello
that prints where it lives.  Every call is appended to $FAKE_CONDA_LOG as one JSON line, with the
CONDA_OVERRIDE_* variables it was given (which the real ones read to set virtual packages).
"""

import hashlib
import json
import os
import shutil
import sys
import time


def fail(msg: str, code: int = 1) -> None:
    print(f"error    libmamba {msg}", file=sys.stderr)
    print("critical libmamba Aborting.", file=sys.stderr)
    sys.exit(code)


def option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        if a in names and i + 1 < len(args):
            return args[i + 1]
    return None


def packages(env_file: str) -> list[str]:
    names, in_deps = [], False
    with open(env_file) as f:
        for line in f:
            stripped = line.strip()
            if not line.startswith((" ", "-")):
                in_deps = stripped.startswith("dependencies:")
            elif in_deps and stripped.startswith("- "):
                names.append(stripped[2:].split("=")[0].split(">")[0].split("<")[0].strip())
    return names


def explicit_packages(env_file: str) -> list[dict] | None:
    """The records of an @EXPLICIT file (one `URL#SHA256` a line), or None if it is not one."""
    with open(env_file) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    if not lines or lines[0] != "@EXPLICIT":
        return None
    records = []
    for line in lines[1:]:
        url, _, sha = line.partition("#")
        name, version, build = url.rsplit("/", 1)[1].removesuffix(".tar.bz2").removesuffix(".conda").rsplit("-", 2)
        records.append({"name": name, "version": version, "build": build, "url": url, "sha256": sha,
                        "channel": url.rsplit("/", 2)[0]})
    return records


def solved(env_file: str) -> list[dict]:
    """What a solve of ENV_FILE gives here: NAME-1.0-0 from conda-forge, with the URL and sha256
    that real frontends record in conda-meta."""
    channel = "https://conda.anaconda.org/conda-forge"
    return [{"name": name, "version": "1.0", "build": "0", "channel": channel,
             "url": f"{channel}/noarch/{name}-1.0-0.tar.bz2", "sha256": hashlib.sha256(name.encode()).hexdigest()}
            for name in packages(env_file)]


def install(prefix: str, env_file: str) -> None:
    os.makedirs(os.path.join(prefix, "conda-meta"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "bin"), exist_ok=True)
    records = explicit_packages(env_file)
    with open(os.path.join(prefix, "conda-meta", "history"), "a") as f:  # as real ones log a transaction
        f.write(time.strftime("==> %Y-%m-%d %H:%M:%S <==\n") + f"# cmd: {' '.join(sys.argv)}\n")
    for record in solved(env_file) if records is None else records:
        name = record["name"]
        with open(os.path.join(prefix, "conda-meta", f"{name}-{record['version']}-{record['build']}.json"), "w") as f:
            json.dump(record, f)
        exe = os.path.join(prefix, "bin", f"{name}-hello")
        with open(exe, "w") as f:
            f.write(f"#!/bin/sh\necho hello from {name} at {prefix}\n")
        os.chmod(exe, 0o755)


def confirmed(args: list[str]) -> bool:
    if "--yes" in args or "-y" in args:
        return True
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("MAMBA_ALWAYS_YES", "CONDA_ALWAYS_YES"))


def main() -> None:
    tool = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    log = os.environ.get("FAKE_CONDA_LOG")
    if log:
        with open(log, "a") as f:
            overrides = {k: v for k, v in os.environ.items() if k.startswith("CONDA_OVERRIDE_")}
            f.write(json.dumps({"tool": tool, "args": args, "overrides": overrides}) + "\n")
    if os.environ.get("FAKE_CONDA_FAIL"):
        fail(os.environ["FAKE_CONDA_FAIL"])
    verb = args[:2] if args[:1] == ["env"] else args[:1]
    prefix, env_file = option(args, "--prefix", "-p"), option(args, "--file", "-f")
    if not prefix or not env_file:
        fail("this fake needs --prefix and --file", 2)
    is_env = os.path.isdir(os.path.join(prefix, "conda-meta"))
    if verb in (["create"], ["env", "create"]):
        if os.path.exists(prefix) and not is_env:
            fail("Non-conda folder exists at prefix - aborting.")
        if is_env:
            if not confirmed(args):
                fail(f"Found conda-prefix at '{prefix}'. Overwrite? [y/N] (no answer)")
            shutil.rmtree(prefix)
        os.makedirs(prefix)
    elif verb == ["install"]:
        if not is_env:
            fail(f"'{prefix}' is not a conda environment")
    elif verb == ["env", "update"]:
        os.makedirs(prefix, exist_ok=True)
    else:
        fail(f"this fake does not know {' '.join(verb)}", 2)
    if tool.startswith("mamba") and not confirmed(args):
        fail("Confirm changes: [Y/n] (no answer)")
    install(prefix, env_file)


if __name__ == "__main__":
    main()

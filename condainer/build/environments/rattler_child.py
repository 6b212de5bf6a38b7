"""Child process of the embedded builder: reads a JSON request on stdin, solves, installs, exits.

Errors are printed as one line on stderr with exit code 1; the process always ends with os._exit so
py-rattler's runtime threads cannot crash the interpreter's shutdown.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from condainer.build.environments import virtual
from condainer.build.environments.run import leave


def _channels(names: list[str], alias: str, root_dir: str):
    from rattler import Channel, ChannelConfig

    config = ChannelConfig(channel_alias=alias if alias.endswith("/") else alias + "/", root_dir=root_dir)
    return [Channel(name, config) for name in names]


def _virtual_packages(req: dict) -> list[virtual.VirtualPackage]:
    """The virtual packages the parent resolved (detection and overrides) for this solve."""
    return [virtual.VirtualPackage(**item) for item in req["virtual_packages"]]


def _reason(exc: Exception, req: dict) -> str:
    """EXC as one line; a solve that lacks a virtual package says which, and how to set it."""
    text = str(exc)
    explained = virtual.explain_unsatisfied(text, _virtual_packages(req)) if "virtual_packages" in req else None
    return explained or f"{type(exc).__name__}: {' '.join(text.split()) or type(exc).__name__}"


async def _locked_records(req: dict, gateway) -> list:
    """The records of the lock's packages, looked up (not solved) in the repodata of the channels
    their URLs name, each checked against the lock's URL and sha256."""
    from rattler import Channel

    wanted = {entry["url"]: entry for entry in req["locked"]}
    by_channel: dict[str, list[str]] = {}
    for entry in req["locked"]:
        by_channel.setdefault(entry["url"].rsplit("/", 2)[0], []).append(entry["name"])
    found = {}
    for channel, names in by_channel.items():
        result = await gateway.query([Channel(channel)], [req["platform"], "noarch"], sorted(set(names)),
                                     recursive=False)
        for records in result:
            for record in records:
                if record.url in wanted:
                    found[record.url] = record
    records = []
    for url, entry in wanted.items():
        record = found.get(url)
        if record is None:
            raise LookupError(f"condainer.lock names {url}, which its channel no longer has")
        if record.sha256 is not None and record.sha256.hex() != entry["sha256"]:
            raise LookupError(f"{url} has sha256 {record.sha256.hex()} in its channel, condainer.lock "
                              f"says {entry['sha256']}")
        records.append(record)
    return records


async def _build(req: dict) -> str:
    from rattler import Gateway, MatchSpec, Platform, install, solve

    cache = Path(req["cache_dir"])
    gateway = Gateway(cache_dir=cache / "repodata")
    specs = [MatchSpec(s) for s in req["specs"]]
    if req.get("locked") is not None:
        records = await _locked_records(req, gateway)
    else:
        records = await solve(
            _channels(req["channels"], req["channel_alias"], req["root_dir"]),
            specs,
            gateway=gateway,
            platforms=[Platform.current(), Platform("noarch")],
            virtual_packages=virtual.to_rattler(_virtual_packages(req)),
        )
    await install(
        records,
        target_prefix=req["prefix"],
        cache_dir=cache / "pkgs",
        show_progress=False,
        requested_specs=[s._match_spec for s in specs],  # 0.28 rejects MatchSpec objects here
    )
    await asyncio.sleep(0.1)  # let runtime callbacks settle before we leave
    return f"installed {len(records)} conda packages"


def main() -> None:
    req: dict = {}
    try:
        req = json.loads(sys.stdin.read())
        message = asyncio.run(_build(req))
        if req.get("variables"):
            # conda stores `variables:` of environment.yml here; activation exports them.
            state = Path(req["prefix"]) / "conda-meta" / "state"
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"env_vars": req["variables"]}, indent=2))
        print(message, flush=True)
        code = 0
    except Exception as exc:  # every failure becomes one line for the parent
        print(_reason(exc, req), file=sys.stderr, flush=True)
        code = 1
    leave(code)


if __name__ == "__main__":
    main()

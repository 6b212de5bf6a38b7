"""Re-pack against the previous image (issue 24): fresh pack of a changed tree vs a re-pack that
copies the old image's compressed blocks (`cnd image pack --reuse`, what `cnd build` does).

Rows, all with the Python writer, 128 KiB blocks, all processors, SOURCE_DATE_EPOCH fixed:

- speed: the venv with one mid-sized package added (corpus.ADDED_PACKAGE) at zstd 6 and zstd 15;
  the old image is a fresh pack of the venv before; fresh pack and re-pack of the changed venv run
  interleaved, medians of N. The issue's targets: re-pack at most 0.5x (zstd 6) and 0.2x (zstd 15).
- same bytes and growth: the venv unchanged, with the package added, and with one added, one
  removed and one upgraded; the 100k small-file tree with 1 % of its files changed; zstd 6 and 15;
  one fresh pack and one re-pack each, compared byte for byte, with what was copied.
- size: every fresh image against mksquashfs's of the same tree and settings (bytes_used), since
  fragment blocks now end where the content says (fs/writer/fragments.py).

  python -m benchmarks reuse [--quick] [--repeats N]
"""

from __future__ import annotations

import filecmp
import os
import re
import sys
from pathlib import Path

from benchmarks import corpus
from benchmarks.common import REPO, cache_root, median, progress, run_timed, table
from benchmarks.pack import Settings, bytes_used, native_cmd, warm_page_cache

EPOCH = "1700000000"
PY_PACK = r"""
import sys
from condainer.fs.options import PackOptions
from condainer.fs.writer import pack_tree
src, image, level, procs, old = sys.argv[1:]
pack_tree(src, image, PackOptions(level=int(level), processors=int(procs), progress=False), reuse=old or None)
"""
COPIED = re.compile(r"reuse: copied (\d+) files' data \(([^,]+), (\d+) blocks\)")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "SOURCE_DATE_EPOCH": EPOCH}


def pack(src: Path, image: Path, s: Settings, old: Path | None = None, rss: list | None = None) -> tuple[float, str]:
    """(seconds, what the re-pack says it copied) of one pack with the Python writer; its peak RSS
    is appended to RSS."""
    cmd = [sys.executable, "-c", PY_PACK, str(src), str(image), str(s.level), str(s.processors), str(old or "")]
    seconds, peak, result = run_timed(cmd, env=_env())
    if rss is not None:
        rss.append(peak)
    if result.returncode != 0:
        raise SystemExit(f"pack of {src} failed: {result.stderr.strip()}")
    found = COPIED.search(result.stderr)
    copied = f"{found[1]} files, {found[2]}, {found[3]} blocks" if found else result.stderr.strip()[:80] or "-"
    return seconds, copied


def native_size(src: Path, image: Path, s: Settings) -> int:
    _, _, result = run_timed(native_cmd(src, image, s), env=_env())
    if result.returncode != 0:
        raise SystemExit(f"mksquashfs of {src} failed: {result.stderr.strip()}")
    return bytes_used(image)


def speed(quick: bool, repeats: int, images: Path) -> tuple[str, list[list]]:
    """Fresh pack against re-pack of the venv with one package added, interleaved."""
    before, after = corpus.python_env(quick), corpus.python_env_changed(quick, "add")
    rows, sizes = [], []
    for level in (6, 15):
        s = Settings(level=level)
        old, fresh, again = (images / f"{n}-{level}.sqfs" for n in ("venv-old", "venv-add-fresh", "venv-add-re"))
        warm_page_cache(before)
        pack(before, old, s)
        warm_page_cache(after)
        times: dict[str, list[float]] = {"fresh": [], "re-pack": []}
        rss: dict[str, list[int]] = {"fresh": [], "re-pack": []}
        copied = ""
        for run_no in range(repeats):
            order = ("fresh", "re-pack") if run_no % 2 == 0 else ("re-pack", "fresh")
            for who in order:
                seconds, said = pack(after, fresh if who == "fresh" else again, s,
                                     None if who == "fresh" else old, rss[who])
                times[who].append(seconds)
                copied = said if who == "re-pack" else copied
            progress(f"reuse, venv + {corpus.ADDED_PACKAGE}, zstd {level}, round {run_no + 1}: "
                     f"fresh {times['fresh'][-1]:.2f} s, re-pack {times['re-pack'][-1]:.2f} s")
        t_fresh, t_re = median(times["fresh"]), median(times["re-pack"])
        target = 0.5 if level == 6 else 0.2
        same = filecmp.cmp(fresh, again, shallow=False)
        rows.append([f"venv + {corpus.ADDED_PACKAGE}", f"zstd {level}", f"{t_fresh:.2f}", f"{t_re:.2f}",
                     f"{t_re / t_fresh:.3f}", f"<= {target}", "yes" if same else "NO",
                     f"{max(rss['fresh']) / 2**20:.0f}", f"{max(rss['re-pack']) / 2**20:.0f}", copied, repeats])
        sizes.append([f"venv + {corpus.ADDED_PACKAGE}", f"zstd {level}", bytes_used(fresh),
                      native_size(after, images / f"venv-add-native-{level}.sqfs", s)])
    return table(["tree", "level", "fresh s", "re-pack s", "ratio", "target", "same bytes", "fresh RSS MiB",
                  "re-pack RSS MiB", "copied", "runs"], rows), sizes


def same_bytes(quick: bool, images: Path) -> tuple[str, list[list]]:
    """One fresh pack and one re-pack per changed tree and level: same bytes? what was copied?"""
    count = 2_000 if quick else 100_000
    venv = corpus.python_env(quick)
    cases = [
        ("venv, unchanged", venv, venv),
        (f"venv + {corpus.ADDED_PACKAGE}", venv, corpus.python_env_changed(quick, "add")),
        (f"venv + {corpus.ADDED_PACKAGE} - {corpus.REMOVED_PACKAGE}, {corpus.UPGRADED_PACKAGE} upgraded", venv,
         corpus.python_env_changed(quick, "mix")),
        (f"{count:,} small files, 1 % changed", corpus.small_files(count), corpus.small_files_changed(count)),
    ]
    rows, sizes = [], []
    for level in (6, 15):
        s = Settings(level=level)
        for label, before, after in cases:
            old, fresh, again = (images / f"same-{n}.sqfs" for n in ("old", "fresh", "re"))
            warm_page_cache(before)
            pack(before, old, s)
            warm_page_cache(after)
            t_fresh, _ = pack(after, fresh, s)
            t_re, copied = pack(after, again, s, old)
            same = filecmp.cmp(fresh, again, shallow=False)
            progress(f"reuse, {label}, zstd {level}: fresh {t_fresh:.2f} s, re-pack {t_re:.2f} s, same bytes {same}")
            rows.append([label, f"zstd {level}", f"{t_fresh:.2f}", f"{t_re:.2f}", f"{t_re / t_fresh:.3f}",
                         "yes" if same else "NO", copied])
            if "small" in label:
                sizes.append([label, f"zstd {level}", bytes_used(fresh),
                              native_size(after, images / f"same-native-{level}.sqfs", s)])
    return table(["tree", "level", "fresh s", "re-pack s", "ratio", "same bytes", "copied"], rows), sizes


def run(quick: bool, repeats: int, backends: list[str]) -> str:
    """Entry point of `python -m benchmarks reuse`."""
    if "python" not in backends:
        return "## re-pack against the previous image\n\nPython writer not available.\n"
    images = cache_root() / "reuse-images"
    images.mkdir(exist_ok=True)
    speed_table, sizes = speed(quick, repeats, images)
    same_table, more = same_bytes(quick, images)
    size_rows = [[t, lvl, py, nat, f"{py / nat:.4f}"] for t, lvl, py, nat in sizes + more]
    return "\n".join([
        "## re-pack against the previous image (`--reuse`, `cnd build`)",
        "",
        f"Python writer, 128 KiB blocks, {Settings().processors} processors, SOURCE_DATE_EPOCH={EPOCH}; the old "
        "image is a fresh pack of the tree before the change. Times are whole runs of a fresh interpreter.",
        "",
        f"Fresh pack against re-pack, interleaved, median of {repeats}:",
        "",
        speed_table,
        "",
        "Same bytes as a fresh pack, and how the re-pack grows with the change (one run each):",
        "",
        same_table,
        "",
        "Fresh images against mksquashfs's (bytes_used) with content-defined fragment blocks:",
        "",
        table(["tree", "level", "python bytes", "mksquashfs bytes", "size ratio"], size_rows),
        "",
    ])

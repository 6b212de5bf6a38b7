"""Longer fuzzing of the reader and check_image than the test suite does (no mounts).

    python benchmarks/fuzz_reader.py [--images 20000] [--seed N] [--keep DIR]

Uses the tests' base images and mutations; prints every failure with the seed and image number that
replay it, and keeps the offending image in --keep."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.helpers.images import mksquashfs
from tests.read.test_reader_fuzz import VARIANTS, build_small_tree, mutate, run_one  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000)
    p.add_argument("--seed", type=int, default=random.SystemRandom().randrange(1 << 32))
    p.add_argument("--keep", default="benchmarks/results/fuzz-failures")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="condainer-fuzz-")
    failures = 0
    try:
        src = os.path.join(work, "src")
        build_small_tree(src)
        bases = {}
        for name, opts in VARIANTS.items():
            img = os.path.join(work, f"{name}.sqfs")
            mksquashfs(src, img, opts[1], *opts[2:])
            bases[name] = open(img, "rb").read()
        rng = random.Random(args.seed)
        path = os.path.join(work, "m.sqfs")
        t0 = time.monotonic()
        refused = 0
        for i in range(args.images):
            variant = rng.choice(list(VARIANTS))
            data = mutate(bases[variant], rng)
            label = f"seed {args.seed} image {i} ({variant})"
            try:
                refused += run_one(data, path, label)
            except BaseException as e:  # noqa: BLE001 - report and go on
                if isinstance(e, KeyboardInterrupt):
                    raise
                failures += 1
                os.makedirs(args.keep, exist_ok=True)
                kept = os.path.join(args.keep, f"seed{args.seed}-{i}-{variant}.sqfs")
                shutil.copy(path, kept)
                print(f"FAIL {label}: {e} (kept {kept})", flush=True)
            if (i + 1) % 1000 == 0:
                print(
                    f"{i + 1} images, {refused} refused by check, {failures} failures, "
                    f"{time.monotonic() - t0:.0f} s",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"done: seed {args.seed}, {args.images} images, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

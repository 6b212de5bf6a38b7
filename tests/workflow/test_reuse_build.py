"""`cnd build` again: the previous image (whichever backend made it) is a source of compressed blocks."""

from __future__ import annotations

import os
import re

from .conftest import cnd, mountpoint_of, set_config


def _stage(mp, extra: bool) -> None:
    (mp / "bin").mkdir(parents=True, mode=0o700)
    os.chmod(mp, 0o700)
    (mp / "bin" / "app").write_text("#!/bin/sh\necho app says hi\n")
    os.chmod(mp / "bin" / "app", 0o755)
    (mp / "lib").mkdir()
    for i in range(20):  # files of several blocks, and small ones
        (mp / "lib" / f"mod{i}.py").write_text(f"# module {i}\n" + "value = 1\n" * (3000 + 7000 * (i % 3)))
    if extra:
        (mp / "lib" / "added.py").write_text("print('new')\n" * 20000)


def test_rebuild_reuses_the_previous_image(tmp_path, mount_base):
    base = str(mount_base)
    r = cnd("init", "-n", cwd=tmp_path, env=dict(os.environ, TMPDIR=base))
    assert r.returncode == 0, r.stderr
    set_config(tmp_path, mount_base_directory=base)
    os.rmdir(r.stdout.strip())
    mp = mountpoint_of(tmp_path)
    _stage(mp, extra=False)
    r = cnd("build", "--backend", "native", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _stage(mp, extra=True)
    r = cnd("build", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    reuse = [line for line in r.stderr.splitlines() if line.startswith("reuse:")]
    # mksquashfs packs only files smaller than a block into fragments: the full blocks are copied,
    # the tails of larger files are not where our writer would put them
    assert len(reuse) == 1 and re.match(r"reuse: copied \d+ files' data \([^,]+, [1-9]\d* blocks\)", reuse[0]), r.stderr
    assert "packed with the python backend" in r.stderr
    image = next(tmp_path.glob("*.squashfs"))
    r = cnd("image", "check", str(image))
    assert r.returncode == 0, r.stderr
    _stage_again = mp.exists()
    assert not _stage_again  # step 7 removed the staging directory
    # and once more, now against an image of our own writer: every file comes from it
    _stage(mp, extra=True)
    r = cnd("build", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "reuse: copied 22 files' data" in r.stderr, r.stderr

"""`cnd -y image pack|mount|umount` print what they would do and change nothing."""

from __future__ import annotations

from condainer import mounts

from .conftest import cnd, force_unmount


def test_dryrun_image_commands_change_nothing(tmp_path):
    src, mp, image = tmp_path / "src", tmp_path / "mp", tmp_path / "x.sqfs"
    src.mkdir()
    mp.mkdir()
    (src / "f").write_text("hi\n")
    r = cnd("-y", "image", "pack", str(src), str(image))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"dryrun: pack {src} into {image}")
    assert not image.exists()
    cnd("image", "pack", str(src), str(image), check=True)
    try:
        r = cnd("-y", "image", "mount", str(image), str(mp))
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"dryrun: mount {image} read-only at {mp}")
        assert mounts.find_mount(mp) is None
        cnd("image", "mount", str(image), str(mp), check=True)
        r = cnd("-y", "image", "umount", str(mp))
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"dryrun: unmount {mp}\n"
        assert mounts.state(mp) == "mounted"
        assert (mp / "f").read_text() == "hi\n"
    finally:
        cnd("image", "umount", str(mp))
        force_unmount(mp)

"""``cnd image ...``: the image layer on its own (pack, mount, umount, check, info)."""

from __future__ import annotations

import json
import os
import stat

import click

from condainer import console
from condainer.dryrun import Actions
from condainer.fs.compression import block_size_problem, level_problem, level_range
from condainer.fs.options import COMPRESSIONS, DEFAULT_BLOCK_SIZE, PackOptions
from condainer.project.layout import BACKENDS

backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="native tools, the Python implementation, or auto (native when on PATH).",
)


def _ctx() -> click.Context | None:
    """The running command's context, so that an error raised here names the command."""
    return click.get_current_context(silent=True)


def parse_size(text: str) -> int:
    """'128K', '1M', '4096' -> bytes; a power of two from 4 KiB to 1 MiB, as squashfs requires."""
    units = {"K": 1024, "M": 1024 * 1024}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = units.get(t[-1:], 1)
    number = t[:-1] if t[-1:] in units else t
    try:
        value = int(number) * mult
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a size such as 128K or 1M", _ctx(), param_hint="--block-size") from None
    problem = block_size_problem(value)
    if problem:
        raise click.BadParameter(f"{text!r}: {problem}", _ctx(), param_hint="--block-size")
    return value


def pack_options(compression: str, level: int | None, block_size: str, processors: int | None,
                 all_root: bool = False) -> PackOptions:
    """PackOptions from CLI values, with the compression level checked against its compressor."""
    problem = level_problem(compression, level) if level is not None else None
    if problem:
        raise click.BadParameter(problem, param_hint="--level", ctx=_ctx())
    if processors is not None and processors < 1:
        raise click.BadParameter("must be at least 1", param_hint="--processors", ctx=_ctx())
    return PackOptions(
        compression=compression,
        level=level,
        block_size=parse_size(block_size) if isinstance(block_size, str) else block_size,
        processors=processors,
        all_root=all_root,
        progress=not console.is_quiet(),
    )


def _actions() -> Actions:
    """Side effects go through Actions, so the global -y only prints them."""
    return Actions(click.get_current_context().find_root().obj.dryrun)


def require_image_file(path: str) -> None:
    """Refuse an IMAGE that is missing, a directory or not a regular file (a FIFO would hang the
    reader) with one line, before the image code opens it."""
    from condainer.errors import ImageError

    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"{path} not found") from None
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path} is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path} is not a regular file, not an image")


LEVEL_HELP = "Compression level ({}).".format(
    ", ".join(f"{name} {r[0]}-{r[1]}" for name in COMPRESSIONS if (r := level_range(name)))
)


@click.group()
def image() -> None:
    """Work with squashfs images directly, without a condainer project."""


@image.command()
@click.argument("src_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("image_path", metavar="IMAGE", type=click.Path(dir_okay=False))
@click.option("--compression", type=click.Choice(COMPRESSIONS), default="zstd", show_default=True)
@click.option("--level", type=int, default=None, help=LEVEL_HELP)
@click.option("--block-size", default=str(DEFAULT_BLOCK_SIZE // 1024) + "K", show_default=True,
              help="Data block size, 4K..1M.")
@click.option("--processors", type=int, default=None, help="Compression threads, beside the one that reads the files, as mksquashfs "
              "-processors does (default: usable CPUs).")
@click.option("--all-root", is_flag=True, help="Store every file as owned by root.")
@click.option("--reuse", "reuse", metavar="OLD_IMAGE", type=click.Path(), default=None,
              help="Copy OLD_IMAGE's compressed blocks wherever they hold exactly the new data (the Python "
              "writer; needs the same compression, level and block size).")
@backend_option
def pack(src_dir, image_path, compression, level, block_size, processors, all_root, reuse, backend) -> None:
    """Pack SRC_DIR into the squashfs image IMAGE."""
    from condainer.backends.pack import pack as do_pack

    options = pack_options(compression, level, block_size, processors, all_root)
    also = f", reusing blocks of {reuse}" if reuse else ""
    used = _actions().do(f"pack {src_dir} into {image_path} ({compression}, block size {options.block_size}, "
                         f"{backend} backend{also})", lambda: do_pack(src_dir, image_path, options, backend, reuse))
    if used:
        console.info(f"packed {src_dir} into {image_path} ({used} backend)")


@image.command("mount")
@click.argument("image_path", metavar="IMAGE", type=click.Path())
@click.argument("mountpoint", type=click.Path())
@click.option("--foreground", is_flag=True, help="Stay in the foreground (the daemon does not detach).")
@click.option("--allow-other", is_flag=True, help="Let other users read the mount (needs user_allow_other).")
@backend_option
def mount_cmd(image_path, mountpoint, foreground, allow_other, backend) -> None:
    """Mount IMAGE read-only at MOUNTPOINT; returns when the mount is ready."""
    from condainer.backends.mount import mount

    require_image_file(image_path)
    if foreground and not _actions().dryrun:
        console.info(f"serving {image_path} at {mountpoint} in the foreground: "
                     f"Ctrl-C, SIGTERM or `cnd image umount {mountpoint}` ends it")
    used = _actions().do(f"mount {image_path} read-only at {mountpoint} ({backend} backend)",
                         lambda: mount(image_path, mountpoint, backend=backend, allow_other=allow_other,
                                       foreground=foreground))
    if used:
        console.info(f"{'unmounted' if foreground else 'mounted'} {image_path} "
                     f"{'from' if foreground else 'at'} {mountpoint} ({used} backend)")


@image.command("umount")
@click.argument("mountpoint", type=click.Path())
def umount_cmd(mountpoint) -> None:
    """Unmount MOUNTPOINT (also cleans a stale mount whose daemon died)."""
    from condainer import mounts
    from condainer.errors import MountError

    current = mounts.state(mountpoint)
    if current == "unmounted":
        raise MountError(f"{mountpoint} is not mounted")
    actions = _actions()
    actions.do(f"unmount {mountpoint}" + (" (stale: lazily)" if current == "stale" else ""),
               lambda: mounts.unmount(mountpoint, lazy=current == "stale"))
    if not actions.dryrun:
        console.info(f"unmounted {mountpoint}" + (" (stale mount cleaned)" if current == "stale" else ""))


@image.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path())
def check(image_path) -> None:
    """Read every inode, directory and block of IMAGE; exit 1 at the first damage."""
    from condainer.fs.check import check_image

    require_image_file(image_path)
    result = check_image(image_path)
    console.out(f"{image_path}: OK ({result})")


@image.command()
@click.argument("image_path", metavar="IMAGE", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(image_path, as_json) -> None:
    """Print IMAGE's compression, block size, counts and sizes."""
    from condainer.build.lockfile import image_lock_state
    from condainer.fs.info import image_info

    require_image_file(image_path)
    data = image_info(image_path)
    lock = image_lock_state(image_path, None)
    data["lock"] = lock["summary"] + (f" (sha256 {lock['sha256']})" if "sha256" in lock else "")
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        width = max(len(k) for k in data)
        for key, value in data.items():
            click.echo(f"{key:<{width}}  {value}")

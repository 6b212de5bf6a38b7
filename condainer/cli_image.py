"""``cnd image ...``: the image layer on its own (pack, mount, umount, check, info)."""

from __future__ import annotations

import click


@click.group()
def image() -> None:
    """Work with squashfs images directly, without a condainer project."""

"""The project workflow commands: init, build, exec, mount, umount, status, prereq, cache."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []

"""Fixtures for the squashfs writer tests (helpers live in tests/helpers)."""

from __future__ import annotations

import contextlib

import pytest


@pytest.fixture
def stack():
    """An ExitStack closed at teardown: every mount entered through it is unmounted, even on failure."""
    with contextlib.ExitStack() as s:
        yield s

"""The one error of the reader: an image that is not squashfs 4.0, or a damaged part of one."""

from __future__ import annotations

from condainer.errors import ImageError


class DamagedImage(ImageError):
    """The image is not a readable squashfs 4.0 image, or part of it is damaged."""

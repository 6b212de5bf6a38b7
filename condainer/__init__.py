"""condainer: conda and pip environments packed into one squashfs image, run from it on HPC systems."""

import os

__version__ = "0.1.0"


def package_root() -> str:
    """The directory holding the condainer package that is running now (an editable install or a
    checkout on PYTHONPATH included): what a launcher or a child process we start must import."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

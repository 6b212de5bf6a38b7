"""condainer: conda and pip environments packed into one squashfs image, run from it on HPC systems."""

__version__ = "0.1.0"

"""One interface over two implementations: native tools (mksquashfs, squashfuse) and our Python ones."""

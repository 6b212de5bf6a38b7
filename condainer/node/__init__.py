"""The node side: mounting an image (host or private), the per-node state, and what a rank or a launcher runs."""

"""condainer's benchmark suite: `python -m benchmarks [suite] [--quick]` (see benchmarks/README.md)."""

"""Build an environment into the staging prefix: one module per tool (conda, py-rattler, pip)."""

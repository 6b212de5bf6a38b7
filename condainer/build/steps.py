"""The steps of `cnd build`, numbered as upstream Condainer numbers them, for `--steps 1,2,3,7`.

Upstream: 1 base environment (Miniforge), 2 environment.yml, 3 requirements.txt with pip,
4 clean-up of the environment, 5 squashfs image, 6 activate/deactivate, 7 remove the staging
directory. Ours do the same jobs under the same numbers; where our builders do not split a job as
upstream's installer does, the step says what it does instead.
"""

from __future__ import annotations

from condainer.errors import ConfigError

BASE, CONDA, PIP, FINISH, PACK, SCRIPTS, CLEANUP = range(1, 8)

STEPS = {
    BASE: "base environment: the Miniforge installer, or the venv of the host Python "
          "(nothing for conda_exe and the embedded builder: they create it in step 2)",
    CONDA: "the conda packages of environment.yml (and its pip: section)",
    PIP: "requirements.txt with the environment's pip",
    FINISH: "record the environment in condainer.lock (project and image)",
    PACK: "pack the staging directory into <uuid>.squashfs",
    SCRIPTS: "write activate and deactivate",
    CLEANUP: "remove the staging directory",
}
ALL = frozenset(STEPS)
# What `cnd lock` runs: the environment and its lock, no image.
LOCK_ONLY = frozenset({BASE, CONDA, PIP, FINISH, CLEANUP})

HELP = ("Run only these of upstream's build steps (default: all): 1 base environment (installer or "
        "venv), 2 conda packages, 3 pip requirements, 4 condainer.lock, 5 pack the image, 6 activate "
        "scripts, 7 remove the staging directory; without 7 it is kept for debugging.")


def parse(text: str | None) -> frozenset[int]:
    """``"1,2,3,7"`` -> {1, 2, 3, 7}; None -> every step. Anything else is a one-line ConfigError."""
    if text is None:
        return ALL
    chosen = set()
    for part in text.replace(" ", "").split(","):
        if not part.isdigit() or int(part) not in STEPS:
            raise ConfigError(f"--steps: {part!r} is not a step; steps are 1 to 7, as `cnd build --help` lists",
                              exit_code=2)
        chosen.add(int(part))
    return frozenset(chosen)

"""What `cnd build` will install, worked out and validated before anything is created: the
environment file, requirements, which conda installer, and the virtual packages of the solve."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from condainer.build.environments import conda, envfile, virtual
from condainer.errors import BuildError, ConfigError
from condainer.project.directory import Project
from condainer.project.virtual_packages import YML_KEY


@dataclasses.dataclass
class BuildPlan:
    """What `cnd build` will install, worked out (and validated) before anything is created."""

    env: envfile.EnvironmentFile | None
    requirements: Path | None
    installer: Path | None
    conda_exe: str | None
    # condainer.yml's virtual_packages (for the frontends) and what the embedded builder solves for
    virtual_config: dict[str, str] = dataclasses.field(default_factory=dict)
    virtual_packages: list[virtual.VirtualPackage] = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        if self.env is None:
            return "a venv of the host Python"
        if self.installer:
            return f"the installer {self.installer.name}"
        if self.conda_exe:
            return os.path.basename(self.conda_exe)
        return "the embedded py-rattler builder"


def plan(project: Project) -> BuildPlan:
    env_yml = project.path_of("environment_yml")
    req = project.path_of("requirements_txt")
    for path in (env_yml, req):
        if path is not None and path.exists() and not path.is_file():
            # silently building without it would give an environment without the user's packages
            raise ConfigError(f"{path} is not a regular file")
    has_env = env_yml is not None and env_yml.is_file()
    has_req = req is not None and req.is_file()
    if not has_env and not has_req:
        raise ConfigError(f"neither {env_yml or 'environment.yml'} nor {req or 'requirements.txt'} found "
                          f"in {project.directory}")
    env = envfile.read(env_yml) if has_env else None
    installer = conda.find_installer(project.directory, project.cfg.get("installer_url", "")) if env else None
    exe = conda.find_conda_exe(project.cfg.get("conda_exe", "")) if env and not installer else None
    configured = project.cfg.get(YML_KEY) or {}
    solving_for = _solving_for(configured, frontend=bool(installer or exe)) if env else []
    return BuildPlan(env, req if has_req else None, installer, exe, configured, solving_for)


def _solving_for(configured: dict[str, str], *, frontend: bool) -> list[virtual.VirtualPackage]:
    """The virtual packages of the solve, worked out before anything is created (a bad
    CONDA_OVERRIDE_* fails here). A frontend detects for itself, so for it our detection is only
    informative and its failure leaves just the overrides."""
    try:
        return virtual.resolve(configured)
    except BuildError:
        if not frontend:
            raise
        return virtual.apply([], virtual.requested(configured))


def solving_for_line(build_plan: BuildPlan) -> str | None:
    """The line `cnd build` prints about the virtual packages of the conda solve (None: no solve)."""
    if build_plan.env is None:
        return None
    line = f"solving for: {virtual.describe(build_plan.virtual_packages)}"
    if build_plan.installer or build_plan.conda_exe:
        # a frontend detects for itself; we can only hand it condainer.yml's values
        passed = " ".join(f"{k}={v}" for k, v in virtual.frontend_environ(build_plan.virtual_config).items())
        line += f" (as detected here; {build_plan.describe()} detects its own" + (
            f", with {passed})" if passed else ")")
    return line

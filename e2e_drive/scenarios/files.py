"""Scenario files (envs/*.toml): an env id, its config, and optionally the module that declares it.

```toml
module = "my_scenarios"              # optional: a module outside e2e_drive that registers the scenario
id = "my_scenarios/ShortHighway-v0"
description = "..."
[config]
duration_s = 10.0
```

The module is imported when the file is loaded, and :attr:`ScenarioFile.env_id` is then
Gymnasium's ``module:id`` form, so every process that builds the env (evaluation workers are
fresh processes) imports the module before it looks the id up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e_drive.config import load_toml
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios.base import (
    all_scenarios,
    import_scenario_module,
    scenario_for_env_id,
    validate_env_config,
)
from e2e_drive.scenarios.sensors import validate_sensors
from e2e_drive.strict import check_unknown_keys

SCENARIO_FILE_KEYS = {"id", "description", "config", "module"}


@dataclass
class ScenarioFile:
    """A scenario file: which env id, which config, and where it came from.

    env_id: what ``gym.make`` takes: the file's ``id``, as ``module:id`` when the file names a module.
    """

    path: Path
    env_id: str
    config: dict[str, Any]
    description: str = ""
    module: str | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def scenario(self) -> str:
        """The registered scenario's name ("highway")."""
        return scenario_for_env_id(self.env_id, source=str(self.path)).name


def load_scenario(path: str | Path) -> ScenarioFile:
    """Load and fully validate a scenario file (module importable, env id known, config strict)."""
    p = Path(path)
    data = load_toml(p)
    check_unknown_keys(str(p), data, SCENARIO_FILE_KEYS)
    module = data.get("module")
    if module is not None:
        import_scenario_module(module, str(p))
    env_id = data.get("id")
    if not isinstance(env_id, str):
        raise ConfigError(f"{p}: key 'id' is required: one of {', '.join(s.env_id for s in all_scenarios())}")
    scenario = scenario_for_env_id(env_id, source=str(p))
    config = data.get("config", {})
    validate_env_config(scenario, config, f"{p} [config]")
    validate_sensors(config, f"{p} [config]")
    make_id = f"{module}:{env_id}" if module is not None and ":" not in env_id else env_id
    return ScenarioFile(path=p, env_id=make_id, config=config, description=str(data.get("description", "")),
                        module=module)

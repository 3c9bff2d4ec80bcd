"""Named evaluation conditions: variants of a scenario (new traffic, new visuals, new sensor).

The CARLA paper compared driving stacks under their training conditions and under new ones;
here a *condition* is a named change applied on top of a scenario file's config, so every
agent meets the same scenario under the same change on the same seeds.

Built-in conditions (:data:`CONDITIONS`):

==============  ================================================================================
train           the scenario file as written (the training conditions)
dusk            visuals: dusk colour palette
night           visuals: night palette (dark road, lit tail lights)
noise           visuals: Gaussian pixel noise, std 8 grey levels
night_noise     visuals: night palette and pixel noise together
blur            visuals: Gaussian blur, sigma 1.5 px
occlusion       visuals: two dark patches on the image
latency         sensor: frames arrive one policy step late (200 ms at 5 Hz)
camera_pitch    sensor: dashcams pitched 2 degrees further down than the agent is told (calibration error)
camera_height   sensor: dashcams mounted 0.3 m higher than the agent is told (calibration error)
train_looks     visuals: a look from the train set per episode (day light, clear or overcast; see sensors/looks.py)
heldout_looks   visuals: a look from the held-out set per episode (low sun, dusk, night, fog or rain, other colours)
dense_traffic   traffic: 1.5x as many vehicles, 1.5x denser; what else it means is declared by
                each scenario (highway: aggressive drivers; racetrack: nothing more)
==============  ================================================================================

A user's own condition is a TOML file named instead of a built-in name
(``--conditions train,conditions/rain.toml``); its name is the file's stem::

    description = "heavy noise and blur"
    [config]                      # deep-merged over the scenario's config
    conditions = { noise_std = 20.0 }

Every resulting config is validated strictly (by the env's own validation) before a run
starts; a condition that does not apply to a scenario (e.g. ``dense_traffic`` on the merge
scenario, which does not declare it) is a :class:`~e2e_drive.errors.ConfigError` naming both.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from e2e_drive.errors import ConfigError

__all__ = ["Condition", "CONDITIONS", "resolve_condition", "resolve_conditions", "apply_condition",
           "deep_merge"]


@dataclass(frozen=True)
class Condition:
    """A named change to a scenario config.

    overrides: keys deep-merged over every scenario's config (tables merge, values replace).
    per_scenario: what the condition means depends on the scenario: each scenario declares its
        overrides for it (``Scenario.conditions``, e.g. the highway's ``dense_traffic`` makes its
        drivers aggressive), and a scenario that declares nothing does not support it.
    scale: key -> factor for numeric keys the scenario has (integers round up).
    """

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    per_scenario: bool = False
    scale: dict[str, float] = field(default_factory=dict)
    source: str = "built-in"

    @property
    def by_scenario(self) -> dict[str, dict[str, Any]]:
        """Scenario name -> that scenario's declared overrides for this condition (empty unless per_scenario)."""
        if not self.per_scenario:
            return {}
        from e2e_drive.scenarios.base import all_scenarios

        return {s.name: dict(s.conditions[self.name]) for s in all_scenarios() if self.name in s.conditions}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (stored in run.json)."""
        return {"name": self.name, "description": self.description, "overrides": self.overrides,
                "by_scenario": self.by_scenario, "scale": self.scale,
                "source": self.source}


#: Condition name -> condition (a registry; add one line to add a condition).
CONDITIONS: dict[str, Condition] = {c.name: c for c in (
    Condition("train", "the scenario as written (training conditions)"),
    Condition("dusk", "new visuals: dusk palette", overrides={"conditions": {"palette": "dusk"}}),
    Condition("night", "new visuals: night palette", overrides={"conditions": {"palette": "night"}}),
    Condition("noise", "new visuals: pixel noise (std 8)", overrides={"conditions": {"noise_std": 8.0}}),
    Condition("night_noise", "new visuals: night palette and pixel noise (std 8)",
              overrides={"conditions": {"palette": "night", "noise_std": 8.0}}),
    Condition("latency", "new sensor: frames one policy step late", overrides={"conditions": {"latency_steps": 1}}),
    Condition("blur", "new visuals: Gaussian blur (sigma 1.5 px)", overrides={"conditions": {"blur_sigma_px": 1.5}}),
    Condition("occlusion", "new visuals: two dark patches on the image",
              overrides={"conditions": {"occlusion_count": 2}}),
    Condition("camera_pitch", "new sensor: dashcam pitched 2 deg down (calibration error)",
              overrides={"conditions": {"calib_pitch_deg": 2.0}}),
    Condition("camera_height", "new sensor: dashcam 0.3 m higher (calibration error)",
              overrides={"conditions": {"calib_height_m": 0.3}}),
    Condition("train_looks", "visuals: the train look set (drawn per episode seed)",
              overrides={"conditions": {"look": "train"}}),
    Condition("heldout_looks", "new visuals: the held-out look set (drawn per episode seed)",
              overrides={"conditions": {"look": "heldout"}}),
    Condition("dense_traffic", "new traffic: 1.5x denser, aggressive drivers",
              per_scenario=True,
              scale={"vehicles_count": 1.5, "vehicles_density": 1.5}),
)}


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested tables merge, other values replace (copies)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _from_file(path: Path) -> Condition:
    from e2e_drive.config import load_toml
    from e2e_drive.strict import check_unknown_keys

    data = load_toml(path)
    check_unknown_keys(str(path), data, ("description", "config"))
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: key 'config' must be a table, got {config!r}")
    return Condition(path.stem, str(data.get("description", f"overrides from {path}")), overrides=config,
                     source=str(path))


def resolve_condition(spec: str) -> Condition:
    """A built-in condition by name, or a condition TOML file by path."""
    if spec in CONDITIONS:
        return CONDITIONS[spec]
    if spec.endswith(".toml") or Path(spec).is_file():
        return _from_file(Path(spec))
    raise ConfigError(f"--conditions {spec!r}: unknown condition; known: {', '.join(CONDITIONS)} "
                      "(or a path to a condition .toml file)")


def resolve_conditions(specs: list[str] | str | None) -> list[Condition]:
    """Resolve a list (or a comma-separated string) of condition specs; default ``["train"]``."""
    if specs is None:
        specs = ["train"]
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    if not specs:
        raise ConfigError("--conditions is empty; give at least one condition (e.g. train)")
    out = [resolve_condition(s) for s in specs]
    names = [c.name for c in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"--conditions names {dup!r} twice")
    return out


def apply_condition(condition: Condition, scenario: str, config: Mapping[str, Any],
                    source: str = "scenario") -> dict[str, Any]:
    """The full, validated config of ``scenario`` under ``condition``.

    ``config`` is the scenario file's config (defaults filled in or not); the result is
    validated with :func:`e2e_drive.scenarios.validate_env_config` and the camera checks, and
    returned with every default filled in. Errors name the condition and the scenario.
    """
    from e2e_drive.scenarios.base import condition_overrides, validate_env_config
    from e2e_drive.scenarios.sensors import validate_sensors

    where = f"condition {condition.name!r} on {source}"
    declared = condition_overrides(scenario, condition.name) if condition.per_scenario else {}
    if declared is None:
        raise ConfigError(f"{where}: does not apply to scenario '{scenario}' "
                          f"(applies to: {', '.join(sorted(condition.by_scenario))})")
    base = validate_env_config(scenario, dict(config), source)
    cfg = deep_merge(base, condition.overrides)
    cfg = deep_merge(cfg, declared)
    for key, factor in condition.scale.items():
        if key not in cfg:
            continue
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: cannot scale key '{key}' = {value!r}")
        cfg[key] = int(math.ceil(value * factor)) if isinstance(value, int) else float(value) * factor
    try:
        full = validate_env_config(scenario, cfg, where)
        validate_sensors(full, where)
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    return full

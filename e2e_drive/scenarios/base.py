"""What a scenario is, and the one registry of scenarios (name and Gymnasium id).

A scenario is declared once, in one module (``e2e_drive/scenarios/highway.py`` for the built-in
highway, any importable module for a scenario of your own), as a :class:`Scenario` passed to
:func:`register_scenario`. Everything else derives from the declaration: the Gymnasium id
(registered by :func:`register_scenario`), strict validation of its config keys
(:func:`validate_env_config`), the highway-env config it builds (:func:`highway_env_config`),
the episode's end (``route_end``), what a named condition such as ``dense_traffic`` changes for
it, and the README's key table (:mod:`e2e_drive.scenarios.doc`).

highway-env keeps a scenario's defaults and end rules on its env class; Gymnasium's registry is
the one list of environment ids. Here both live on the declaration.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from e2e_drive.config import COMMON_KEYS, Key, check_keys, check_value
from e2e_drive.errors import ConfigError

#: The built-in scenarios: (name, Gymnasium id, declaring module), in registration order. Importing
#: e2e_drive registers these ids from here without importing highway-env (seconds); each module's
#: declaration must say the same (register_scenario checks), so the two cannot drift apart.
BUILTINS: tuple[tuple[str, str, str], ...] = (
    ("highway", "e2e_drive/Highway-v0", "e2e_drive.scenarios.highway"),
    ("racetrack", "e2e_drive/Racetrack-v0", "e2e_drive.scenarios.racetrack"),
    ("merge", "e2e_drive/Merge-v0", "e2e_drive.scenarios.merge"),
    ("roundabout", "e2e_drive/Roundabout-v0", "e2e_drive.scenarios.roundabout"),
    ("onramp_merge", "e2e_drive/OnrampMerge-v0", "e2e_drive.scenarios.abilities.onramp_merge"),
    ("highway_exit", "e2e_drive/HighwayExit-v0", "e2e_drive.scenarios.abilities.highway_exit"),
    ("roundabout_exit", "e2e_drive/RoundaboutExit-v0", "e2e_drive.scenarios.abilities.roundabout_exit"),
    ("intersection", "e2e_drive/Intersection-v0", "e2e_drive.scenarios.abilities.intersection"),
    ("cut_in", "e2e_drive/CutIn-v0", "e2e_drive.scenarios.abilities.cut_in"),
    ("lead_brake", "e2e_drive/LeadBrake-v0", "e2e_drive.scenarios.abilities.lead_brake"),
    ("stopped_vehicle", "e2e_drive/StoppedVehicle-v0", "e2e_drive.scenarios.abilities.stopped_vehicle"),
    ("slow_lead", "e2e_drive/SlowLead-v0", "e2e_drive.scenarios.abilities.slow_lead"),
    ("construction", "e2e_drive/Construction-v0", "e2e_drive.scenarios.abilities.construction"),
    ("curves", "e2e_drive/Curves-v0", "e2e_drive.scenarios.abilities.curves"),
)
BUILTIN_MODULES: tuple[str, ...] = tuple(module for _, _, module in BUILTINS)

#: Entry point of every scenario's Gymnasium id (a string: nothing above this layer is imported).
ENV_ENTRY_POINT = "e2e_drive.env:DrivingEnv"

#: The abilities of the ability suite (Bench2Drive's grouping, extended): every suite scenario
#: declares which one it measures; the evaluator scores each ability over its scenarios.
ABILITIES: tuple[str, ...] = ("emergency_braking", "overtaking", "merging", "giving_way", "route_following",
                              "lane_keeping")
#: Difficulty levels of a suite scenario, easiest first (a scenario declares each level's key values).
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard")
#: The difficulty a scenario file gets when it does not name one.
DEFAULT_DIFFICULTY = "medium"


@dataclass(frozen=True)
class Scenario:
    """Everything about one scenario.

    name: short name ("highway"): run.json, messages, condition declarations.
    env_id: its Gymnasium id ("e2e_drive/Highway-v0"); ``gym.make(env_id, config=...)`` builds it.
    description: the road and the traffic, one line.
    sim_class: the simulator, a subclass of :class:`e2e_drive.sim.scenarios.ScenarioMixin` and a
        highway-env environment (which builds the road and the traffic at reset).
    keys: config keys of this scenario only (name -> :class:`~e2e_drive.config.Key`: type,
        default, meaning with its unit in brackets, check); every scenario also accepts
        :data:`e2e_drive.config.COMMON_KEYS`.
    defaults: defaults of common keys that differ for this scenario (``{"duration_s": 20.0}``).
    stock_config: validated config -> highway-env config keys of this scenario (on top of the
        common ones: action, frequencies, duration), e.g. ``{"lanes_count": 4}``.
    check: cross-key rule, ``check(config, source)`` raising ConfigError (highway: the traffic
        must fit on the road).
    route: where the ego is headed, in words (the README's scenario table).
    route_end: ``route_end(sim, config) -> bool``: the route is done (event ``route_end``, the
        episode terminates); checked after a crash and leaving the road, before the time limit.
    conditions: condition name -> config overrides that condition means for this scenario. A
        condition that is scenario-specific (``dense_traffic``) applies only to scenarios that
        declare it here (an empty dict: it applies, only its generic part).
    ability: what the scenario measures, one of :data:`ABILITIES` ("" for a scenario outside the
        ability suite); episode lines carry it and the evaluator scores each ability.
    difficulties: difficulty level (:data:`DIFFICULTIES`) -> values of this scenario's own keys at
        that level. A scenario that declares them accepts the key ``difficulty`` (default
        :data:`DEFAULT_DIFFICULTY`); a key the config does not set takes the level's value, a key it
        sets keeps the given value.
    module: the module that declared it (filled in by :func:`register_scenario`).
    """

    name: str
    env_id: str
    description: str
    sim_class: type
    keys: Mapping[str, Key] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    stock_config: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    check: Callable[[dict[str, Any], str], None] | None = None
    route: str = ""
    route_end: Callable[[Any, dict[str, Any]], bool] | None = None
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ability: str = ""
    difficulties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    module: str = ""

    def schema(self) -> dict[str, Key]:
        """All keys this scenario accepts (common ones first), with this scenario's defaults."""
        schema = {**COMMON_KEYS, **self.keys}
        for key, default in self.defaults.items():
            schema[key] = dataclasses.replace(schema[key], default=default)
        if self.difficulties:
            schema["difficulty"] = Key.choice(DEFAULT_DIFFICULTY, "difficulty level; sets the keys of the "
                                              "scenario's difficulty table that the file does not set", DIFFICULTIES)
        return schema

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        # Pickled by reference (its keys and hooks may be lambdas): the registered declaration of the
        # same name, its module imported first (an env's snapshot restores in another process).
        return _registered, (self.module, self.name)


def _registered(module: str, name: str) -> Scenario:
    """The registered scenario ``name``, importing its declaring ``module`` first (unpickling)."""
    if module:
        import_scenario_module(module, f"scenario {name!r}")
    return get_scenario(name, source="snapshot")


_REGISTRY: dict[str, Scenario] = {}
_BY_ENV_ID: dict[str, Scenario] = {}
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def register_scenario(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry and its id to Gymnasium's; returns it (with ``module`` set).

    A name or an env id that is already registered is a ConfigError naming both declarations.
    """
    _load_builtins()
    if not isinstance(scenario, Scenario):
        raise ConfigError(f"register_scenario: expected a Scenario, got {type(scenario).__name__}")
    _check_declaration(scenario)
    for taken, what in ((_REGISTRY.get(scenario.name), "name"), (_BY_ENV_ID.get(scenario.env_id), "env id")):
        if taken is not None:
            value = scenario.name if what == "name" else scenario.env_id
            raise ConfigError(f"scenario {what} {value!r} is already registered (by {taken.module or 'unknown'}); "
                              f"choose another {what}")
    if not scenario.module:
        object.__setattr__(scenario, "module", sys._getframe(1).f_globals.get("__name__", ""))
    builtin = next((b for b in BUILTINS if b[2] == scenario.module), None)
    if builtin is not None and builtin[:2] != (scenario.name, scenario.env_id):
        raise ConfigError(f"{scenario.module} declares scenario {scenario.name!r} ({scenario.env_id}) but "
                          f"e2e_drive.scenarios.base.BUILTINS lists {builtin[0]!r} ({builtin[1]}) for it")
    _REGISTRY[scenario.name] = scenario
    _BY_ENV_ID[scenario.env_id] = scenario
    _register_gym_id(scenario.name, scenario.env_id)
    return scenario


def unregister_scenario(name: str) -> None:
    """Remove a scenario and its Gymnasium id (tests; a built-in cannot be removed)."""
    scenario = _REGISTRY.get(name)
    if scenario is None:
        return
    if scenario.module in BUILTIN_MODULES:
        raise ConfigError(f"scenario {name!r} is built in; it cannot be unregistered")
    del _REGISTRY[name]
    del _BY_ENV_ID[scenario.env_id]
    from gymnasium.envs.registration import registry

    registry.pop(scenario.env_id, None)


def register_builtin_ids() -> None:
    """Register the built-in scenarios' Gymnasium ids (without importing their modules); idempotent."""
    for name, env_id, _ in BUILTINS:
        _register_gym_id(name, env_id)


def _register_gym_id(name: str, env_id: str) -> None:
    from gymnasium.envs.registration import register, registry

    spec = registry.get(env_id)
    if spec is not None and spec.entry_point == ENV_ENTRY_POINT and spec.kwargs.get("scenario") == name:
        return
    registry.pop(env_id, None)
    register(id=env_id, entry_point=ENV_ENTRY_POINT, kwargs={"scenario": name})


def _check_declaration(s: Scenario) -> None:
    where = f"scenario {s.name!r}"
    if not isinstance(s.name, str) or not s.name.isidentifier():
        raise ConfigError(f"scenario name {s.name!r}: expected an identifier (letters, digits, _)")
    if not isinstance(s.env_id, str) or "/" not in s.env_id or ":" in s.env_id:
        raise ConfigError(f"{where}: env_id {s.env_id!r}: expected a namespaced Gymnasium id (my_pkg/MyRoad-v0)")
    from e2e_drive.sim.scenarios import ScenarioMixin

    if not (isinstance(s.sim_class, type) and issubclass(s.sim_class, ScenarioMixin)):
        raise ConfigError(f"{where}: sim_class must be a class deriving from e2e_drive.sim.scenarios.ScenarioMixin "
                          f"and a highway-env environment")
    clash = sorted(set(s.keys) & set(COMMON_KEYS))
    if clash:
        raise ConfigError(f"{where}: key '{clash[0]}' is a common key; change its default with defaults=, "
                          f"not keys=")
    unknown = sorted(set(s.defaults) - set(COMMON_KEYS))
    if unknown:
        raise ConfigError(f"{where}: defaults names '{unknown[0]}', not a common key; declare it in keys=")
    for key, spec in s.keys.items():
        if not isinstance(spec, Key):
            raise ConfigError(f"{where}: key '{key}' must be declared with e2e_drive.config.Key")
    if s.ability and s.ability not in ABILITIES:
        raise ConfigError(f"{where}: ability {s.ability!r} is not one of {', '.join(ABILITIES)}")
    if s.difficulties:
        if "difficulty" in s.keys:
            raise ConfigError(f"{where}: key 'difficulty' is declared by difficulties=, not keys=")
        if set(s.difficulties) != set(DIFFICULTIES):
            raise ConfigError(f"{where}: difficulties must declare exactly {', '.join(DIFFICULTIES)}; "
                              f"got {', '.join(sorted(s.difficulties))}")
        schema = s.schema()
        for level, values in s.difficulties.items():
            for key, value in values.items():
                if key not in s.keys:
                    raise ConfigError(f"{where}: difficulty {level!r} sets '{key}', not a key of this scenario")
                check_value(f"{where} difficulty {level!r}", key, value, schema[key])


def get_scenario(name: str, source: str = "scenario") -> Scenario:
    """A registered scenario by name; ConfigError listing the known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{source}: unknown scenario {name!r}; known: "
                          f"{', '.join(s.name for s in all_scenarios())}") from None


def scenario_for_env_id(env_id: str, source: str = "env id") -> Scenario:
    """The scenario behind a Gymnasium id; ``module:id`` (Gymnasium's form) imports the module first."""
    _load_builtins()
    if isinstance(env_id, str) and ":" in env_id:
        module, _, env_id = env_id.partition(":")
        import_scenario_module(module, source)
    try:
        return _BY_ENV_ID[env_id]
    except (KeyError, TypeError):
        raise ConfigError(f"{source}: unknown env id {env_id!r}; known ids: "
                          f"{', '.join(s.env_id for s in all_scenarios())}") from None


def all_scenarios() -> tuple[Scenario, ...]:
    """Every registered scenario: the built-ins in BUILTINS order (whichever module was imported
    first), then the others in registration order."""
    _load_builtins()
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    order = {name: i for i, name in enumerate(_REGISTRY)}
    return tuple(sorted(_REGISTRY.values(), key=lambda s: (rank.get(s.module, len(rank)), order[s.name])))


def import_scenario_module(module: str, source: str) -> None:
    """Import a module that registers scenarios; ConfigError naming ``source`` and the module if it fails."""
    if not isinstance(module, str) or not module or not all(p.isidentifier() for p in module.split(".")):
        raise ConfigError(f"{source}: key 'module' = {module!r}: expected a module name (my_scenario, mypkg.roads)")
    try:
        importlib.import_module(module)
    except ConfigError as exc:
        raise ConfigError(f"{source}: module {module!r}: {exc}") from None
    except Exception as exc:
        why = (str(exc).splitlines() or [""])[0]
        raise ConfigError(f"{source}: cannot import module {module!r} ({type(exc).__name__}: {why}); "
                          f"is its folder on PYTHONPATH?") from None


# --------------------------------------------------------------------------- configs
def scenario_schema(scenario: str | Scenario) -> dict[str, Key]:
    """All keys a scenario accepts, with that scenario's defaults."""
    return _as_scenario(scenario).schema()


def validate_env_config(scenario: str | Scenario, config: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """Validate an env config for ``scenario``; cross-key rules included. Returns the full config."""
    s = _as_scenario(scenario)
    schema = s.schema()
    given = config or {}
    cfg = check_keys(source, given, schema)
    if s.difficulties:
        for key, value in s.difficulties[cfg["difficulty"]].items():
            if key not in given:
                cfg[key] = copy.deepcopy(value)
    if cfg["policy_frequency_hz"] > cfg["simulation_frequency_hz"]:
        raise ConfigError(
            f"{source}: key 'policy_frequency_hz' = {cfg['policy_frequency_hz']} is above "
            f"'simulation_frequency_hz' = {cfg['simulation_frequency_hz']}; the ego would never move"
        )
    if cfg["simulation_frequency_hz"] % cfg["policy_frequency_hz"]:
        raise ConfigError(
            f"{source}: key 'simulation_frequency_hz' = {cfg['simulation_frequency_hz']} must be a multiple of "
            f"'policy_frequency_hz' = {cfg['policy_frequency_hz']} (each action lasts whole sub-steps)"
        )
    if not cfg["cameras"]:
        raise ConfigError(f"{source}: key 'cameras' is empty; at least one camera is needed")
    if s.check is not None:
        s.check(cfg, source)
    return cfg


def highway_env_config(scenario: str | Scenario, cfg: dict[str, Any]) -> dict[str, Any]:
    """Translate a validated e2e_drive config into the stock env's config keys."""
    s = _as_scenario(scenario)
    out: dict[str, Any] = {
        "action": {
            "type": "ContinuousAction",
            "acceleration_range": tuple(cfg["acceleration_range_mps2"]),
            "steering_range": tuple(cfg["steering_range_rad"]),
            "longitudinal": True,
            "lateral": True,
        },
        "observation": {"type": "Kinematics"},
        "simulation_frequency": cfg["simulation_frequency_hz"],
        "policy_frequency": cfg["policy_frequency_hz"],
        "duration": cfg["duration_s"],
        "offscreen_rendering": True,
    }
    if s.stock_config is not None:
        out.update(s.stock_config(cfg))
    return out


def make_scenario(scenario: str | Scenario, cfg: dict[str, Any]) -> Any:
    """Build (not yet reset with a seed) the stock-based simulator for a validated config."""
    s = _as_scenario(scenario)
    cls: Any = s.sim_class  # a highway-env env class; e2e_config is set before its __init__ runs
    sim = cls.__new__(cls)
    sim.e2e_config = cfg
    cls.__init__(sim, config=highway_env_config(s, cfg))
    return sim


def condition_overrides(scenario: str | Scenario, condition: str) -> dict[str, Any] | None:
    """What ``condition`` means for ``scenario`` (its declared overrides), or None if it declares nothing."""
    s = _as_scenario(scenario)
    value = s.conditions.get(condition)
    return None if value is None else dict(value)


def _as_scenario(scenario: str | Scenario) -> Scenario:
    return scenario if isinstance(scenario, Scenario) else get_scenario(scenario)

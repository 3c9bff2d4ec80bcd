"""Load an agent from an agent file (agents/*.toml) or from ``"package.module:Class"``.

Agent file (TOML; YAML too when PyYAML is installed)::

    type = "expert"                 # a name in AGENT_TYPES ...
    # class = "my_pkg.my_mod:MyAgent"  # ... or a user's class (exactly one of the two)
    [params]                        # keyword arguments of the class's constructor
    cruise_speed_mps = 28.0

Strict, like the scenario files: an unknown top-level key, an unknown or missing
parameter, a value of the wrong type, an import path that does not import or a class
without ``reset``/``act`` raise :class:`e2e_drive.errors.ConfigError` with one line naming
the file, the key and the value (checked by :mod:`e2e_drive.strict`). Parameters annotated as
``Path`` resolve relative to the agent file. A class with a ``config_class`` attribute (a
dataclass, e.g. the rule planner's ``PlannerConfig``) is built as ``cls(config)``, its
parameter table read by :func:`e2e_drive.strict.from_table`. Classes are imported lazily, so
loading the expert never imports torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

from e2e_drive.agents.base import is_agent
from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.strict import check_type, check_unknown, from_table, key_path

#: Agent type name -> "package.module:Class" (imported only when used).
AGENT_TYPES: dict[str, str] = {
    "modular": "e2e_drive.agents.modular.stack:ModularAgent",
    "expert": "e2e_drive.agents.expert:ExpertAgent",
    "safety_filter": "e2e_drive.agents.safety_filter:SafetyFilter",
    "e2e": "e2e_drive.agents.e2e_agent:E2EAgent",
    "blind": "e2e_drive.agents.blind:BlindAgent",
}

_FILE_KEYS = ("type", "class", "params")


def import_object(path: str, *, where: str) -> Any:
    """Import ``"package.module:Name"``; ConfigError (naming ``where``) when it does not import."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise ConfigError(f"{where}: {path!r} is not of the form 'package.module:ClassName'")
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {path!r} is not of the form 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, SyntaxError in the user's module, ...
        raise ConfigError(f"{where}: cannot import module {module_name!r} from {path!r}: "
                          f"{type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: module {module_name!r} has no attribute {attr!r} (from {path!r})")
        obj = getattr(obj, part)
    return obj


def check_kwargs(
    factory: Callable[..., Any], params: Mapping[str, Any] | None, *, where: str, base_dir: Path | None = None
) -> dict[str, Any]:
    """Validate ``params`` against ``factory``'s signature: unknown, missing and mistyped keys.

    ``where`` prefixes every message (for example ``"agents/expert.toml: params"``).
    """
    params = dict(params or {})
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return params
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:
        hints = {}
    accepted = {
        name: prm for name, prm in signature.parameters.items()
        if prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)
    }
    takes_any = any(prm.kind == prm.VAR_KEYWORD for prm in signature.parameters.values())
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in accepted:
            if takes_any:
                out[key] = value
                continue
            check_unknown({key: value}, accepted, where, noun="parameter")
        out[key] = check_type(value, hints.get(key, Any), key_path(where, key), base_dir)
    for name, prm in accepted.items():
        if prm.default is prm.empty and name not in out:
            raise ConfigError(f"{where}.{name}: missing required parameter")
    return out


def build(
    spec: str | type,
    params: Mapping[str, Any] | None = None,
    *,
    registry: Mapping[str, str] | None = None,
    where: str,
    base_dir: Path | None = None,
    required_methods: tuple[str, ...] = (),
    params_where: str | None = None,
    label: str | None = None,
) -> Any:
    """Instantiate ``spec`` (a registry name, ``"package.module:Class"`` or a class) with checked params.

    ``where`` names the key that holds ``spec`` in messages; ``params_where`` the key that
    holds ``params`` (default ``where + ".params"``); ``label`` what is built, for a constructor
    that raises (default ``where``): ConfigError "LABEL: constructor raised TYPE: message",
    the original exception as its cause (``e2e-drive --debug`` prints it).
    """
    if isinstance(spec, str):
        if registry is not None and spec in registry:
            cls = import_object(registry[spec], where=where)
        elif ":" in spec:
            cls = import_object(spec, where=where)
        else:
            names = ", ".join(sorted(registry or {}))
            raise ConfigError(f"{where} = {spec!r}: unknown name (known: {names}; or 'package.module:Class')")
    else:
        cls = spec
    if not callable(cls):
        raise ConfigError(f"{where} = {spec!r}: not a class")
    missing = [m for m in required_methods if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"{where} = {spec!r}: class has no {' / '.join(missing)} method")
    params_where = params_where or (f"{where}.params" if where else "params")
    config_class = getattr(cls, "config_class", None)
    if isinstance(config_class, type) and dataclasses.is_dataclass(config_class):  # one typed config: params are it
        args: tuple[Any, ...] = (from_table(config_class, params, params_where, base_dir=base_dir),)
        kwargs: dict[str, Any] = {}
    else:
        args, kwargs = (), check_kwargs(cls, params, where=params_where, base_dir=base_dir)
    try:
        return cls(*args, **kwargs)
    except (ConfigError, CheckpointError):
        raise
    except Exception as exc:  # the user's or a registered class's own failure: name it, keep the cause
        raise ConfigError(f"{label or where}: constructor raised {type(exc).__name__}: {exc}") from exc


def _read_file(path: Path) -> dict[str, Any]:
    from e2e_drive.config import parse_toml, read_text_file

    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not an agent file")
        raise ConfigError(f"{path}: unknown agent file type {suffix!r} (expected .toml, .yaml or .yml)")
    text = read_text_file(path, "agent file")
    if suffix == ".toml":
        return parse_toml(path, text, "invalid TOML")
    try:
        import yaml  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(f"{path}: YAML agent files need PyYAML (pip install pyyaml); or use TOML") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_agent_file(path: str | Path) -> Any:
    """Build the agent an agent file describes (see the module docstring)."""
    path = Path(path)
    data = _read_file(path)
    check_unknown(data, _FILE_KEYS, f"{path}:")
    has_type, has_class = "type" in data, "class" in data
    if has_type == has_class:
        raise ConfigError(f"{path}: give exactly one of 'type' (one of {sorted(AGENT_TYPES)}) or 'class'")
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: params = {params!r}: expected a table")
    if has_type:
        name = data["type"]
        if not isinstance(name, str) or name not in AGENT_TYPES:
            raise ConfigError(f"{path}: type = {name!r}: unknown agent type (known: {', '.join(sorted(AGENT_TYPES))})")
        spec, where = name, f"{path}: type"
    else:
        spec, where = data["class"], f"{path}: class"
        if not isinstance(spec, str) or ":" not in spec:
            raise ConfigError(f"{path}: class = {spec!r}: expected 'package.module:ClassName'")
    try:
        agent = build(spec, params, registry=AGENT_TYPES, where=where, base_dir=path.resolve().parent,
                      required_methods=("reset", "act"), params_where=f"{path}: params",
                      label=f"{path}: agent {spec!r}")
    except (ConfigError, CheckpointError) as exc:  # raised inside the constructor: name this file too
        msg = str(exc)
        raise type(exc)(msg if msg.startswith(str(path)) else f"{path}: {msg}") from exc.__cause__
    return _checked_agent(agent, where)


def load_agent(spec: str | Path, params: Mapping[str, Any] | None = None) -> Any:
    """Load an agent from an agent file path, a registered type name or ``"package.module:Class"``.

    ``params`` is only for the last two (an agent file carries its own).
    """
    text = str(spec)
    if Path(text).is_dir():
        raise ConfigError(f"{text}: is a directory, not an agent file (agents/*.toml) or package.module:Class")
    if text.endswith((".toml", ".yaml", ".yml")) or Path(text).is_file():
        if params:
            raise ConfigError(f"{text}: params are given in the agent file, not next to it")
        return load_agent_file(Path(text))
    agent = build(text, params, registry=AGENT_TYPES, where=f"agent {text!r}", required_methods=("reset", "act"),
                  params_where=f"agent {text!r}: params")
    return _checked_agent(agent, f"agent {text!r}")


def _checked_agent(agent: Any, where: str) -> Any:
    if not is_agent(agent):
        raise ConfigError(f"{where}: {type(agent).__name__} has no callable reset/act")
    from e2e_drive.agents.base import agent_needs

    try:
        agent_needs(agent)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return agent

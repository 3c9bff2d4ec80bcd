"""Strict configuration: the one place where config tables are checked.

highway-env and plain ``cls(**table)`` accept a misspelt key silently or fail with a Python
traceback. Every table a user writes (scenario config, camera, sensor conditions, agent
parameters, planner, learning tables) goes through this module instead, so that a mistake is
one :class:`ConfigError` line naming the file, the key, the value and what was expected, with
a "did you mean" for a misspelt key.

Two ways to declare keys:

- a schema, ``{name: Key(type, default, meaning, ...)}``, checked by :func:`check_keys` (flat
  config dicts such as a scenario's ``[config]``); messages read
  ``SOURCE: key 'k' must be int, got '50'`` and ``SOURCE: unknown key 'k'; ...``;
- a dataclass whose field types (and :func:`setting` metadata: unit, meaning, range, choices)
  are the declaration, built by :func:`from_table`; messages read
  ``agents/e2e.toml: params.train.epochs = 'x': expected an integer``.

Both share the type rules: a bool is not a number, an int is accepted (and stored as float)
where a float is expected, and TOML arrays become tuples where a tuple is declared.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Union

from e2e_drive.errors import ConfigError

# --------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Key:
    """One key of a schema: its type, default, meaning (``help``) and what values are valid.

    type: a type or a tuple of types (``(int, float)``; ``type(None)`` allows an absent value).
    check / expect: a predicate on the value and the words that say what it accepts.
    unit: the unit of the value ("m/s"), for docs. range: inclusive ``(low, high)``, either
    end None for unbounded. choices: the allowed values.
    """

    type: type | tuple[type, ...]
    default: Any
    help: str
    check: Callable[[Any], bool] | None = None
    expect: str = ""
    unit: str = field(default="", kw_only=True)
    range: tuple[float | None, float | None] | None = field(default=None, kw_only=True)
    choices: tuple[Any, ...] | None = field(default=None, kw_only=True)

    @classmethod
    def choice(cls, default: Any, help: str, choices: tuple[Any, ...]) -> "Key":
        """A key whose value is one of ``choices`` (its type is the default's), said as "'a' or 'b'"."""
        return cls(type(default), default, help, None, " or ".join(repr(c) for c in choices), choices=choices)

    def valid(self, value: Any) -> bool:
        """True when ``value`` (already of the right type) passes check, range and choices."""
        if self.check is not None and not self.check(value):
            return False
        return _in_range(value, self.range) and (self.choices is None or value in self.choices)

    def expectation(self) -> str:
        """What a valid value is, in words."""
        return self.expect or _range_words(self.range, self.choices, _noun(self.type)) or self.help


def setting(default: Any, meaning: str, *, unit: str = "", range: tuple[float | None, float | None] | None = None,
            choices: tuple[Any, ...] | None = None) -> Any:
    """A dataclass field with its meaning, unit and valid range or choices (checked by :func:`from_table`)."""
    return field(default=default, metadata={"meaning": meaning, "unit": unit, "range": range, "choices": choices})


def positive(x: Any) -> bool:
    return x > 0


def nonneg(x: Any) -> bool:
    return x >= 0


def one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda x: x in choices


def range2(x: Any) -> bool:
    """A ``[low, high]`` pair of numbers with low < high."""
    return len(x) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x) and x[0] < x[1]


def _in_range(value: Any, bounds: tuple[float | None, float | None] | None) -> bool:
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def _noun(kind: type | tuple[type, ...]) -> str:
    """What a key's values are called in its range's words: an integer, a number or a value."""
    kinds = set(kind) if isinstance(kind, tuple) else {kind}
    if kinds == {int}:
        return "an integer"
    return "a number" if kinds and kinds <= {int, float} else "a value"


def _range_words(bounds: tuple[float | None, float | None] | None, choices: tuple[Any, ...] | None,
                 noun: str = "a value") -> str:
    if choices is not None:
        return "one of " + ", ".join(repr(c) for c in choices)
    if bounds is None:
        return ""
    low, high = bounds
    if low is not None and high is not None:
        return f"{noun} in [{low:g}, {high:g}]"
    return f"{noun} >= {low:g}" if low is not None else f"{noun} <= {high:g}"


# --------------------------------------------------------------------------- messages


def did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known key, or ``""``."""
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close and len(key) >= 3:  # "cruise" for "cruise_speed_mps": a known key that starts with it
        close = sorted(k for k in known if k.startswith(key))[:1]
    return f"; did you mean '{close[0]}'?" if close else ""


def key_path(where: str, key: str) -> str:
    """Where a key is: ``"agents/e2e.toml: params.train"`` + ``"epochs"`` -> ``"...: params.train.epochs"``.

    ``where`` ending in ":" names a file's top level (``"agents/e2e.toml:"`` -> ``"agents/e2e.toml: type"``).
    """
    if not where:
        return key
    return f"{where} {key}" if where.endswith(":") else f"{where}.{key}"


def check_unknown(table: Mapping[str, Any], known: typing.Iterable[str], where: str, noun: str = "key") -> None:
    """ConfigError for the first key of ``table`` not in ``known``.

    ``WHERE.KEY = VALUE: unknown key 'KEY'; did you mean 'x'? (known: ...)``
    """
    known = list(known)
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{key_path(where, key)} = {value!r}: unknown {noun} '{key}'{did_you_mean(key, known)} "
                              f"(known: {', '.join(sorted(known)) or 'none'})")


def invalid(key: str, value: Any, why: str, what: str = "") -> ConfigError:
    """The error a dataclass's own checks (``__post_init__``) raise for one field.

    Its message reads ``WHAT key 'KEY' = VALUE: WHY`` (``KEY = VALUE: WHY`` without ``what``);
    :func:`from_table` rewrites it to name the file and table: ``WHERE.KEY = VALUE: WHY``.
    """
    err = ConfigError(f"{what} key '{key}' = {value!r}: {why}" if what else f"{key} = {value!r}: {why}")
    err.key, err.value, err.why = key, value, why  # type: ignore[attr-defined]
    return err


_STARTS_WITH_KEY = re.compile(r"^[A-Za-z_][\w.\[\]]* = ")


def _locate(exc: ConfigError, where: str) -> str:
    """An error raised while building a table's object, with the table's place in front."""
    key = getattr(exc, "key", None)
    if key is not None:
        return f"{key_path(where, key)} = {exc.value!r}: {exc.why}"  # type: ignore[attr-defined]
    msg = str(exc)
    return key_path(where, msg) if _STARTS_WITH_KEY.match(msg) else f"{where}: {msg}"


# --------------------------------------------------------------------------- schemas (Key)


def _type_name(t: type | tuple[type, ...]) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    return " or ".join("null" if x is type(None) else x.__name__ for x in ts)


def check_value(source: str, key: str, value: Any, spec: Key) -> Any:
    """Check one value against its key spec; return it normalised (ints accepted for floats)."""
    allowed = spec.type if isinstance(spec.type, tuple) else (spec.type,)
    if isinstance(value, bool) and bool not in allowed:
        ok = False
    elif isinstance(value, int) and float in allowed:
        ok = True
    else:
        ok = isinstance(value, allowed)
    if not ok:
        raise ConfigError(f"{source}: key '{key}' must be {_type_name(spec.type)}, got {value!r}")
    if value is not None and not spec.valid(value):
        raise ConfigError(f"{source}: key '{key}' = {value!r} is invalid: expected {spec.expectation()}")
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed:
        value = float(value)
    return value


def check_unknown_keys(source: str, given: Mapping[str, Any], allowed: typing.Iterable[str]) -> None:
    """``SOURCE: unknown key 'x'; did you mean 'y'? allowed keys: ...`` for the first unknown key of a file
    or a table (scenario files and their ``[config]``)."""
    allowed = sorted(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        hint = did_you_mean(str(unknown[0]), allowed)
        raise ConfigError(f"{source}: unknown key '{unknown[0]}'{hint}{' ' if hint else '; '}"
                          f"allowed keys: {', '.join(allowed)}")


def check_keys(source: str, given: dict[str, Any], schema: dict[str, Key]) -> dict[str, Any]:
    """Validate ``given`` against ``schema`` strictly and return the full config with defaults filled in."""
    if not isinstance(given, dict):
        raise ConfigError(f"{source}: expected a table/dict of keys, got {type(given).__name__}")
    check_unknown_keys(source, given, schema)
    out = {}
    for key, spec in schema.items():
        out[key] = check_value(source, key, given[key], spec) if key in given else copy.deepcopy(spec.default)
    return out


# --------------------------------------------------------------------------- typed values


def describe(tp: Any) -> str:
    """What a value of annotation ``tp`` is, in a message's words ("an integer", "a number", ...)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        arms = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(describe(a) for a in arms) if arms else "None"
    if origin is Literal:
        return f"one of {list(typing.get_args(tp))}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "None",
             list: "a list", tuple: "a list", dict: "a table"}
    if tp in names:
        return names[tp]
    if origin in names:
        return names[origin]
    if tp is Path or (isinstance(tp, type) and issubclass(tp, Path)):
        return "a path (string)"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_type(value: Any, tp: Any, where: str, base_dir: Path | None = None) -> Any:
    """Check ``value`` against annotation ``tp``; return it normalised. Unknown annotations pass.

    Normalised: an int where a float is expected becomes a float, a list where a tuple is
    expected a tuple, a path relative to ``base_dir`` (when given) absolute. ``where`` names
    the key in messages: ``WHERE = VALUE: expected ...``.
    """
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return check_type(value, arm, where, base_dir)
            except ConfigError:
                pass
        raise ConfigError(f"{where} = {value!r}: expected {describe(tp)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where} = {value!r}: expected {describe(tp)}")
        return value
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where} = {value!r}: expected None")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return value
    if tp is Path or (isinstance(tp, type) and issubclass(tp, Path)):
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where} = {value!r}: expected a path (string)")
        path = Path(value).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return path
    container = origin or tp
    if container in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {value!r}: expected a list")
        args = typing.get_args(tp)
        if container is tuple and args and args[-1] is not Ellipsis:  # tuple[float, float]: a fixed length
            if len(value) != len(args):
                raise ConfigError(f"{where} = {value!r}: expected a list of {len(args)} values")
            return tuple(check_type(v, a, f"{where}[{i}]", base_dir) for i, (v, a) in enumerate(zip(value, args)))
        items = ([check_type(v, args[0], f"{where}[{i}]", base_dir) for i, v in enumerate(value)] if args
                 else list(value))
        return items if container is list else tuple(items)
    if container is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} = {value!r}: expected a table")
        return dict(value)
    return value


def _check_metadata(value: Any, metadata: Mapping[str, Any], where: str, given: Any) -> None:
    """``value`` (checked and normalised from ``given``) against a :func:`setting`'s range and choices."""
    bounds, choices = metadata.get("range"), metadata.get("choices")
    if (bounds is not None and not _in_range(value, bounds)) or (choices is not None and value not in choices):
        raise ConfigError(f"{where} = {given!r}: out of range: expected {_range_words(bounds, choices)}")
    if isinstance(value, float) and not math.isfinite(value) and bounds is not None:
        raise ConfigError(f"{where} = {given!r}: out of range: expected a finite number")


# --------------------------------------------------------------------------- dataclasses


def table_fields(cls: type) -> dict[str, tuple[Any, dataclasses.Field]]:
    """``{name: (annotation, field)}`` of a dataclass's init fields (annotations resolved)."""
    hints = typing.get_type_hints(cls)
    return {f.name: (hints.get(f.name, Any), f) for f in dataclasses.fields(cls) if f.init}


def from_table(cls: type, table: Mapping[str, Any] | None, where: str, *, base_dir: Path | None = None) -> Any:
    """Build dataclass ``cls`` from a TOML table, strictly.

    where: the table's place, ``"agents/e2e.toml: params.train"``; every message starts with
        ``WHERE.KEY = VALUE:``: an unknown key (with "did you mean"), a value of the wrong type
        (from the field's annotation), a value outside the field's :func:`setting` range or
        choices, and the errors of ``cls.__post_init__`` (see :func:`invalid`).
    Absent keys keep the field's default; ``None`` is an empty table.
    """
    if table is not None and not isinstance(table, Mapping):
        raise ConfigError(f"{where} = {table!r}: expected a table")
    table = dict(table or {})
    fields = table_fields(cls)
    check_unknown(table, fields, where)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        tp, f = fields[key]
        kwargs[key] = check_type(value, tp, key_path(where, key), base_dir)
        _check_metadata(kwargs[key], f.metadata, key_path(where, key), value)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(_locate(exc, where)) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_fields(obj: Any, what: str = "") -> None:
    """Check a dataclass instance's fields against their annotations and :func:`setting` ranges.

    For ``__post_init__`` of a frozen dataclass built in code: ints given for floats are
    stored as floats; a wrong value raises :func:`invalid` (``WHAT key 'KEY' = VALUE: ...``).
    """
    for name, (tp, f) in table_fields(type(obj)).items():
        value = getattr(obj, name)
        try:
            checked = check_type(value, tp, name)
            _check_metadata(checked, f.metadata, name, value)
        except ConfigError as exc:
            why = str(exc).split(": ", 1)[1] if ": " in str(exc) else str(exc)
            raise invalid(name, value, why, what) from None
        if checked is not value and type(checked) is not type(value):
            object.__setattr__(obj, name, checked)


def to_table(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a TOML-ready table (tuples as lists); ``from_table`` reads it back."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def describe_fields(cls: type) -> list[tuple[str, str, Any, str, str]]:
    """``(name, type, default, unit, meaning)`` per field of a dataclass declared with :func:`setting`."""
    rows = []
    for name, (tp, f) in table_fields(cls).items():
        default = f.default if f.default is not dataclasses.MISSING else None
        rows.append((name, describe(tp), default, f.metadata.get("unit", ""), f.metadata.get("meaning", "")))
    return rows

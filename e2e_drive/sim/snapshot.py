"""Deterministic snapshots of a running episode: take one, restore it, step on, same continuation.

A snapshot holds the whole simulator as one object graph: the env (``env.unwrapped``: the
highway-env scenario with its road, vehicles, traffic, route and scripted-event state, every
random generator it draws from -- ``np_random`` of the env and of the simulator, the sensors'
noise generator --, the step counter and time, the cameras, the frame stacks and latency buffers,
and whatever is attached to it, such as the evaluator's ground-truth recorder installed as its
``substep_callback``) plus any ``extra`` objects the caller wants restored *with* it (the agent,
the last observation and info). Everything is pickled in one go, so objects shared between the
env and the extras (the recorder's reference to the env) stay shared after a restore.

Besides the object graph, a snapshot carries the process-wide state the simulation reads:
highway-env's IDM class constants (intersection-v0 changes them on the class for its episode;
:func:`restore` sets them back to the snapshot's values) and the highway-env version (a snapshot
is refused by another version).

Two kinds of snapshot:

- ``portable=True`` (default): plain bytes (:meth:`Snapshot.to_bytes`), restorable in another
  process (a module referenced by an agent, such as ``torch`` kept as an attribute, is stored
  by name and imported again).
- ``portable=False``: for forks in the same process; objects that do not change while driving
  (PyTorch networks) are shared with the original instead of copied. Cheaper; not for bytes.

Restoring gives a *new* env object (``restore(...).env``) whose ``step`` continues exactly like
the original's would have from the moment of the snapshot (tested in the same process and in a
subprocess: same states, same camera frames, same events).
"""

from __future__ import annotations

import importlib
import io
import pickle
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from e2e_drive.errors import ConfigError

__all__ = ["Restored", "Snapshot", "restore", "take"]

#: Payload format version (a snapshot of another version is refused).
FORMAT = 1
_MAGIC = b"E2ESNAP1"

#: Class attributes of highway-env's vehicle models that scenarios change for their episode.
_IDM_CONSTANTS = ("DISTANCE_WANTED", "COMFORT_ACC_MAX", "COMFORT_ACC_MIN")


def _idm_classes() -> list[type]:
    """IDMVehicle and every subclass loaded now (the classes whose constants a scenario may set)."""
    from highway_env.vehicle.behavior import IDMVehicle

    out, todo = [], [IDMVehicle]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _class_state() -> dict[str, dict[str, Any]]:
    """``"module:qualname"`` -> {constant: value} for the constants a class sets itself."""
    state: dict[str, dict[str, Any]] = {}
    for cls in _idm_classes():
        own = {k: cls.__dict__[k] for k in _IDM_CONSTANTS if k in cls.__dict__}
        if own:
            state[f"{cls.__module__}:{cls.__qualname__}"] = own
    return state


def _apply_class_state(state: dict[str, dict[str, Any]]) -> None:
    for name, values in state.items():
        module, _, qualname = name.partition(":")
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        for key, value in values.items():
            if obj.__dict__.get(key) != value:
                setattr(obj, key, value)


def _highway_env_version() -> str:
    import highway_env

    return str(getattr(highway_env, "__version__", "?"))


def _is_shared(obj: Any) -> bool:
    """Objects a same-process snapshot shares instead of copying: PyTorch networks (unchanged while driving)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


class _Pickler(pickle.Pickler):
    def __init__(self, fh: Any, shared: list[Any] | None) -> None:
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return ("module", obj.__name__)
        if self.shared is not None and _is_shared(obj):
            self.shared.append(obj)
            return ("shared", len(self.shared) - 1)
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: Any, shared: list[Any]) -> None:
        super().__init__(fh)
        self.shared = shared

    def persistent_load(self, pid: Any) -> Any:
        kind, value = pid
        if kind == "module":
            return importlib.import_module(value)
        if kind == "shared":
            return self.shared[value]
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


@dataclass(frozen=True)
class Snapshot:
    """A taken snapshot: the pickled object graph and what it needs from the process."""

    payload: bytes
    #: Process-wide class constants at the time of the snapshot (see the module docstring).
    class_state: dict[str, dict[str, Any]]
    highway_env_version: str
    #: Simulator time and sub-step counter at the snapshot (for messages and checks).
    time_s: float
    sim_steps: int
    #: Whether it may be serialized (:meth:`to_bytes`) and restored in another process.
    portable: bool = True
    #: Objects shared with the original process (``portable=False``); empty for a portable one.
    shared: list[Any] = field(default_factory=list, repr=False, compare=False)

    def to_bytes(self) -> bytes:
        """The snapshot as bytes, to restore in another process (:meth:`from_bytes`)."""
        if not self.portable:
            raise ConfigError("this snapshot shares objects with its process (take(..., portable=False)); "
                              "take a portable one to serialize it")
        header = pickle.dumps({"format": FORMAT, "class_state": self.class_state,
                               "highway_env_version": self.highway_env_version, "time_s": self.time_s,
                               "sim_steps": self.sim_steps}, protocol=pickle.HIGHEST_PROTOCOL)
        return _MAGIC + len(header).to_bytes(8, "little") + header + self.payload

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "snapshot") -> "Snapshot":
        """A snapshot from :meth:`to_bytes`'s bytes; anything else is a ConfigError naming ``source``."""
        if not isinstance(data, (bytes, bytearray)) or not bytes(data[:8]) == _MAGIC or len(data) < 16:
            raise ConfigError(f"{source}: not an e2e_drive snapshot (bad header)")
        n = int.from_bytes(data[8:16], "little")
        try:
            header = pickle.loads(data[16:16 + n])
        except Exception as exc:
            raise ConfigError(f"{source}: corrupt snapshot header ({type(exc).__name__})") from None
        if header.get("format") != FORMAT:
            raise ConfigError(f"{source}: snapshot format {header.get('format')!r}; this version reads {FORMAT}")
        return cls(payload=bytes(data[16 + n:]), class_state=header["class_state"],
                   highway_env_version=header["highway_env_version"], time_s=float(header["time_s"]),
                   sim_steps=int(header["sim_steps"]))


@dataclass
class Restored:
    """What :func:`restore` gives back: the env (unwrapped, ready to ``step``) and the extras."""

    env: Any
    extra: dict[str, Any]


def take(env: Any, extra: dict[str, Any] | None = None, portable: bool = True) -> Snapshot:
    """Snapshot ``env`` (a Gymnasium env or its ``unwrapped``) with ``extra`` objects (agent, observation...).

    The env must have been reset. ``portable=False`` shares unchanging objects (networks) with this
    process: cheaper, for forks in the same process only.
    """
    unwrapped = getattr(env, "unwrapped", env)
    sim = getattr(unwrapped, "sim", None)
    if sim is None or getattr(sim, "road", None) is None:
        raise ConfigError("snapshot: the env has no simulator state yet (call env.reset first)")
    shared: list[Any] | None = None if portable else []
    fh = io.BytesIO()
    try:
        _Pickler(fh, shared).dump({"env": unwrapped, "extra": dict(extra or {})})
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise ConfigError(f"snapshot: cannot capture the episode: {type(exc).__name__}: {exc}".splitlines()[0]) \
            from None
    return Snapshot(payload=fh.getvalue(), class_state=_class_state(), highway_env_version=_highway_env_version(),
                    time_s=float(sim.time), sim_steps=int(sim.steps), portable=portable, shared=shared or [])


def restore(snapshot: Snapshot | bytes) -> Restored:
    """A new env (and extras) in the state of ``snapshot`` (a :class:`Snapshot` or its bytes).

    Also sets the process-wide class constants the snapshot recorded. Every call gives an
    independent copy: restore the same snapshot twice to fork an episode twice.
    """
    snap = Snapshot.from_bytes(snapshot) if isinstance(snapshot, (bytes, bytearray)) else snapshot
    version = _highway_env_version()
    if snap.highway_env_version != version:
        raise ConfigError(f"snapshot: taken with highway-env {snap.highway_env_version}, this process has {version}")
    try:
        data = _Unpickler(io.BytesIO(snap.payload), snap.shared).load()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"snapshot: cannot restore: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    _apply_class_state(snap.class_state)
    return Restored(env=data["env"], extra=data["extra"])

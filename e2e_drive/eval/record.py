"""Ground truth of one episode, recorded at the simulation rate.

The runner fills an :class:`EpisodeRecord` from the simulator itself (never from the agent
or the reward), one row per simulator sub-step, row 0 being the state right after reset
(``t_s[0] == 0``). Every metric in :mod:`e2e_drive.eval.metrics` is a pure function of it.

Frames and signs follow the project contracts: highway-env world frame, y to the right of
the driving direction, heading 0 = +x and positive to the right; lateral offsets are
positive to the right of the lane centre; ``longitudinal_m`` is the progress along the
road, cumulative across lane segments (the runner adds segment lengths when the ego moves
onto the next segment).

Neighbours are stored as a padded ``(T, K, F)`` float array in ego-lane coordinates with
columns :data:`NEIGHBOUR_FEATURES`; rows that hold no vehicle are NaN. Vehicles and static
objects may both appear (objects have speed 0).

Two serialisations: :meth:`EpisodeRecord.to_dict` / :meth:`EpisodeRecord.from_dict` (JSON
safe: numbers, lists, strings, booleans and ``null`` for non-finite values; no pickles) and
:meth:`EpisodeRecord.save_npz` / :meth:`EpisodeRecord.load_npz` (compact, for
``--save-trajectories``; loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "NEIGHBOUR_FEATURES",
    "STEP_COLUMNS",
    "COLLISION_KINDS",
    "EpisodeRecord",
    "RecordBuilder",
    "lane_changes_from_lane_ids",
]

#: Columns of ``EpisodeRecord.neighbours[..., j]``, in ego-lane coordinates (as placed by
#: :class:`e2e_drive.sim.lane_frame.EgoLaneFrame`, like the agents' ground truth):
#: ``ds_m`` their longitudinal position minus the ego's along the road, through a join to the
#: next or previous road segment (centre to centre, + = ahead);
#: ``lateral_m`` their lateral coordinate on the ego's lane (same frame as
#: ``lateral_offset_m``, + = right of the ego lane centre); ``speed_mps`` their speed along
#: the road; ``length_m``, ``width_m`` their size.
NEIGHBOUR_FEATURES: tuple[str, ...] = ("ds_m", "lateral_m", "speed_mps", "length_m", "width_m")

#: Per-step columns: name -> (numpy dtype, required, value that stands for ``null`` in JSON).
STEP_COLUMNS: dict[str, tuple[type, bool, Any]] = {
    "t_s": (np.float64, True, math.nan),
    "x_m": (np.float64, True, math.nan),
    "y_m": (np.float64, True, math.nan),
    "heading_rad": (np.float64, True, math.nan),
    "speed_mps": (np.float64, True, math.nan),
    "steering_rad": (np.float64, True, math.nan),
    "lane_id": (np.int64, True, -1),
    "lane_width_m": (np.float64, True, math.nan),
    "longitudinal_m": (np.float64, True, math.nan),
    "lateral_offset_m": (np.float64, True, math.nan),
    "heading_error_rad": (np.float64, True, math.nan),
    "on_road": (np.bool_, True, False),
    "wrong_way": (np.bool_, True, False),
    "lead_gap_m": (np.float64, True, math.inf),
    "lead_speed_mps": (np.float64, True, math.nan),
    "acceleration_mps2": (np.float64, False, math.nan),
    "speed_limit_mps": (np.float64, False, math.nan),
    "route_progress_m": (np.float64, False, math.nan),
    "route_deviated": (np.bool_, False, False),
    "route_done": (np.bool_, False, False),
}

#: Kinds of the other party in a collision.
COLLISION_KINDS: tuple[str, ...] = ("vehicle", "object")

_COLLISION_REQUIRED = ("step", "other_kind", "other_id", "relative_speed_mps", "other_ds_m",
                       "other_lateral_m")
_COLLISION_OPTIONAL = {"ego_changing_lane": None, "other_length_m": None,
                       "other_width_m": None, "other_speed_mps": None}
_LANE_CHANGE_REQUIRED = ("step", "from_lane", "to_lane")

_SCALARS = ("policy_hz", "sim_hz", "route_m", "scenario_duration_s", "ego_length_m",
            "ego_width_m", "interventions", "clipped_actions", "route_ends")
#: Keys of a scripted scenario event (``scenario_events``): required, and those kept when present.
_EVENT_REQUIRED = ("kind", "time_s")


def _finite_or_none(value: Any) -> Any:
    """JSON-safe scalar: non-finite floats become None, numpy scalars become Python ones."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _array_to_list(array: np.ndarray) -> list:
    """Nested lists with None in place of NaN/inf (JSON has neither)."""
    if array.dtype.kind == "f":
        obj = array.astype(object)
        obj[~np.isfinite(array)] = None
        return obj.tolist()
    return array.tolist()


def _list_to_array(values: Any, dtype: type, null_value: Any) -> np.ndarray:
    """Inverse of :func:`_array_to_list`: None becomes ``null_value``."""
    arr = np.asarray(values, dtype=object)
    if arr.size and (arr == None).any():  # noqa: E711  (elementwise comparison)
        arr = np.where(arr == None, null_value, arr)  # noqa: E711
    return arr.astype(dtype)


@dataclass
class EpisodeRecord:
    """Ground truth of one episode at the simulation rate.

    Per-step columns (numpy arrays of length T, one row per simulator sub-step, row 0 at
    reset): see :data:`STEP_COLUMNS`. ``lead_gap_m`` is the bumper-to-bumper gap to the
    vehicle ahead in the ego lane (``inf`` if none), ``lead_speed_mps`` its speed along the
    road (NaN if none). ``acceleration_mps2`` (commanded) and ``speed_limit_mps`` are
    optional (None when not recorded). Route columns (optional, None without a route of road
    edges): ``route_progress_m`` the distance along the route since the start (edge routes
    only; the road ahead is measured by ``longitudinal_m``), ``route_deviated`` whether the ego
    has deviated from its route, ``route_done`` whether it has reached the route's end.

    Policy-rate data: ``act_ms`` (wall-clock ms per ``act`` call) and ``stage_ms``
    (per-stage ms for modular stacks, name -> array).

    Events: ``collisions`` (dicts with ``step``, ``other_kind`` in :data:`COLLISION_KINDS`,
    ``other_id``, ``relative_speed_mps`` (closing speed, >= 0 magnitude of the relative
    velocity), ``other_ds_m``, ``other_lateral_m`` (ego-lane coordinates as in
    :data:`NEIGHBOUR_FEATURES`), ``ego_changing_lane`` (bool or None = unknown),
    optional ``other_length_m``, ``other_width_m``, ``other_speed_mps``) and
    ``lane_changes`` (dicts with ``step``, ``from_lane``, ``to_lane``); ``scenario_events``
    (the scenario's scripted events, dicts with ``kind``, ``time_s`` since reset, optional
    ``vehicle`` and other scalars the scenario added).

    Scalars: ``policy_hz``, ``sim_hz``, ``route_m`` (distance the scenario asks for, None
    when the scenario ends on time only), ``scenario_duration_s`` (None when it ends on the
    route only), ``route_ends`` (reaching the route's end ends the episode: success needs it),
    ego size, ``interventions`` (safety driver or filter take-overs) and
    ``clipped_actions`` (NaN or out-of-range actions clipped by the runner).
    """

    t_s: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    heading_rad: np.ndarray
    speed_mps: np.ndarray
    steering_rad: np.ndarray
    lane_id: np.ndarray
    lane_width_m: np.ndarray
    longitudinal_m: np.ndarray
    lateral_offset_m: np.ndarray
    heading_error_rad: np.ndarray
    on_road: np.ndarray
    wrong_way: np.ndarray
    lead_gap_m: np.ndarray
    lead_speed_mps: np.ndarray
    neighbours: np.ndarray | None = None
    acceleration_mps2: np.ndarray | None = None
    speed_limit_mps: np.ndarray | None = None
    route_progress_m: np.ndarray | None = None
    route_deviated: np.ndarray | None = None
    route_done: np.ndarray | None = None
    act_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stage_ms: dict[str, np.ndarray] = field(default_factory=dict)
    collisions: list[dict] = field(default_factory=list)
    lane_changes: list[dict] = field(default_factory=list)
    scenario_events: list[dict] = field(default_factory=list)
    policy_hz: float = 1.0
    sim_hz: float = 15.0
    route_m: float | None = None
    scenario_duration_s: float | None = None
    ego_length_m: float = 5.0
    ego_width_m: float = 2.0
    interventions: int = 0
    clipped_actions: int = 0
    route_ends: bool = False

    def __post_init__(self) -> None:
        self._validate()

    # ------------------------------------------------------------------ validation
    @property
    def n_steps(self) -> int:
        """Number of recorded simulation steps T."""
        return int(self.t_s.shape[0])

    def _validate(self) -> None:
        length = None
        for name, (dtype, required, _null) in STEP_COLUMNS.items():
            value = getattr(self, name)
            if value is None:
                if required:
                    raise ValueError(f"EpisodeRecord.{name} is required, got None")
                continue
            try:
                arr = np.asarray(value, dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"EpisodeRecord.{name}: cannot convert to {np.dtype(dtype)}: {exc}") from None
            if arr.ndim != 1:
                raise ValueError(f"EpisodeRecord.{name} must be 1-D (one value per simulation step), got shape {arr.shape}")
            if length is None:
                length = arr.shape[0]
            elif arr.shape[0] != length:
                raise ValueError(f"EpisodeRecord.{name} has {arr.shape[0]} rows, t_s has {length}")
            setattr(self, name, arr)
        t = self.t_s
        if np.isnan(t).any():
            raise ValueError("EpisodeRecord.t_s contains NaN")
        if length and length > 1 and not (np.diff(t) > 0).all():
            raise ValueError("EpisodeRecord.t_s must be strictly increasing")
        k_default = 0
        if self.neighbours is None:
            self.neighbours = np.full((length, k_default, len(NEIGHBOUR_FEATURES)), np.nan)
        nb = np.asarray(self.neighbours, dtype=np.float64)
        if nb.ndim != 3 or nb.shape[0] != length or nb.shape[2] != len(NEIGHBOUR_FEATURES):
            raise ValueError(
                f"EpisodeRecord.neighbours must have shape (T={length}, K, {len(NEIGHBOUR_FEATURES)}) "
                f"with columns {NEIGHBOUR_FEATURES}, got {nb.shape}")
        self.neighbours = nb
        self.act_ms = np.asarray(self.act_ms, dtype=np.float64).reshape(-1)
        self.stage_ms = {str(k): np.asarray(v, dtype=np.float64).reshape(-1) for k, v in self.stage_ms.items()}
        self.collisions = [self._check_event(c, "collisions", _COLLISION_REQUIRED, _COLLISION_OPTIONAL)
                           for c in self.collisions]
        for c in self.collisions:
            if c["other_kind"] not in COLLISION_KINDS:
                raise ValueError(f"EpisodeRecord.collisions: other_kind must be one of {COLLISION_KINDS}, "
                                 f"got {c['other_kind']!r}")
        self.lane_changes = [self._check_event(e, "lane_changes", _LANE_CHANGE_REQUIRED, {})
                             for e in self.lane_changes]
        self.scenario_events = [self._check_scenario_event(e) for e in self.scenario_events]
        self.route_ends = bool(self.route_ends)
        for name in ("policy_hz", "sim_hz"):
            value = float(getattr(self, name))
            if not value > 0:
                raise ValueError(f"EpisodeRecord.{name} must be > 0, got {value}")
            setattr(self, name, value)
        for name in ("route_m", "scenario_duration_s"):
            value = getattr(self, name)
            if value is not None:
                value = float(value)
                if not value > 0:
                    raise ValueError(f"EpisodeRecord.{name} must be > 0 or None, got {value}")
                setattr(self, name, value)
        if self.route_m is None and self.scenario_duration_s is None:
            raise ValueError("EpisodeRecord needs route_m or scenario_duration_s (how the scenario ends)")
        for name in ("ego_length_m", "ego_width_m"):
            setattr(self, name, float(getattr(self, name)))
        for name in ("interventions", "clipped_actions"):
            value = int(getattr(self, name))
            if value < 0:
                raise ValueError(f"EpisodeRecord.{name} must be >= 0, got {value}")
            setattr(self, name, value)

    def _check_event(self, event: Mapping[str, Any], where: str, required: Sequence[str],
                     optional: Mapping[str, Any]) -> dict:
        if not isinstance(event, Mapping):
            raise ValueError(f"EpisodeRecord.{where}: each event must be a dict, got {type(event).__name__}")
        missing = [k for k in required if k not in event]
        if missing:
            raise ValueError(f"EpisodeRecord.{where}: event {dict(event)} lacks keys {missing}")
        unknown = set(event) - set(required) - set(optional)
        if unknown:
            raise ValueError(f"EpisodeRecord.{where}: unknown keys {sorted(unknown)} in {dict(event)}")
        out = {**optional, **{k: _finite_or_none(v) for k, v in event.items()}}
        step = int(out["step"])
        if not 0 <= step < self.n_steps:
            raise ValueError(f"EpisodeRecord.{where}: step {step} outside [0, {self.n_steps})")
        out["step"] = step
        return out

    @staticmethod
    def _check_scenario_event(event: Mapping[str, Any]) -> dict:
        if not isinstance(event, Mapping):
            raise ValueError(f"EpisodeRecord.scenario_events: each event must be a dict, got {type(event).__name__}")
        missing = [k for k in _EVENT_REQUIRED if k not in event]
        if missing:
            raise ValueError(f"EpisodeRecord.scenario_events: event {dict(event)} lacks keys {missing}")
        out = {str(k): _finite_or_none(v) for k, v in event.items()
               if v is None or isinstance(v, (str, bool, int, float, np.generic))}
        out["kind"] = str(out["kind"])
        if out["time_s"] is None:
            raise ValueError(f"EpisodeRecord.scenario_events: event {dict(event)} has no finite time_s")
        out["time_s"] = float(out["time_s"])
        return out

    # ------------------------------------------------------------------ helpers
    @property
    def sim_dt_s(self) -> float:
        """Simulation step in seconds (1 / sim_hz)."""
        return 1.0 / self.sim_hz

    def neighbour_column(self, name: str) -> np.ndarray:
        """One neighbour feature as a (T, K) array (NaN where no vehicle)."""
        return self.neighbours[:, :, NEIGHBOUR_FEATURES.index(name)]

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists, numbers, None for non-finite values)."""
        columns = {}
        for name in STEP_COLUMNS:
            value = getattr(self, name)
            columns[name] = None if value is None else _array_to_list(value)
        return {
            "format": "e2e_drive.EpisodeRecord/1",
            "columns": columns,
            "neighbour_features": list(NEIGHBOUR_FEATURES),
            "neighbours": _array_to_list(self.neighbours),
            "n_neighbours": int(self.neighbours.shape[1]),
            "act_ms": _array_to_list(self.act_ms),
            "stage_ms": {k: _array_to_list(v) for k, v in self.stage_ms.items()},
            "collisions": [{k: _finite_or_none(v) for k, v in c.items()} for c in self.collisions],
            "lane_changes": [{k: _finite_or_none(v) for k, v in e.items()} for e in self.lane_changes],
            "scenario_events": [dict(e) for e in self.scenario_events],
            **{name: _finite_or_none(getattr(self, name)) for name in _SCALARS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EpisodeRecord":
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != "e2e_drive.EpisodeRecord/1":
            raise ValueError(f"not an EpisodeRecord dict (format={data.get('format')!r})")
        if list(data.get("neighbour_features", NEIGHBOUR_FEATURES)) != list(NEIGHBOUR_FEATURES):
            raise ValueError(f"neighbour_features {data.get('neighbour_features')} != {list(NEIGHBOUR_FEATURES)}")
        kwargs: dict[str, Any] = {}
        for name, (dtype, _required, null) in STEP_COLUMNS.items():
            value = data["columns"].get(name)
            kwargs[name] = None if value is None else _list_to_array(value, dtype, null)
        t = len(kwargs["t_s"])
        k = int(data.get("n_neighbours", 0))
        nb = _list_to_array(data["neighbours"], np.float64, math.nan)
        kwargs["neighbours"] = nb.reshape(t, k, len(NEIGHBOUR_FEATURES))
        kwargs["act_ms"] = _list_to_array(data.get("act_ms", []), np.float64, math.nan)
        kwargs["stage_ms"] = {n: _list_to_array(v, np.float64, math.nan) for n, v in data.get("stage_ms", {}).items()}
        kwargs["collisions"] = [dict(c) for c in data.get("collisions", [])]
        kwargs["lane_changes"] = [dict(e) for e in data.get("lane_changes", [])]
        kwargs["scenario_events"] = [dict(e) for e in data.get("scenario_events", [])]
        for name in _SCALARS:
            if name in data:
                kwargs[name] = data[name]
        return cls(**kwargs)

    # ------------------------------------------------------------------ npz
    def save_npz(self, path: str | Path) -> Path:
        """Write a compressed ``.npz`` (arrays plus one JSON string for events and scalars)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for name in STEP_COLUMNS:
            value = getattr(self, name)
            if value is not None:
                arrays[f"col_{name}"] = value.astype(np.float32) if name not in (
                    "t_s", "x_m", "y_m", "longitudinal_m", "route_progress_m") and value.dtype == np.float64 else value
        arrays["neighbours"] = self.neighbours.astype(np.float32)
        arrays["act_ms"] = self.act_ms
        for name, value in self.stage_ms.items():
            arrays[f"stage_{name}"] = value
        meta = {
            "format": "e2e_drive.EpisodeRecord/1",
            "neighbour_features": list(NEIGHBOUR_FEATURES),
            "collisions": [{k: _finite_or_none(v) for k, v in c.items()} for c in self.collisions],
            "lane_changes": [{k: _finite_or_none(v) for k, v in e.items()} for e in self.lane_changes],
            "scenario_events": [dict(e) for e in self.scenario_events],
            **{name: _finite_or_none(getattr(self, name)) for name in _SCALARS},
        }
        arrays["meta_json"] = np.array(json.dumps(meta))
        with path.open("wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    @classmethod
    def load_npz(cls, path: str | Path) -> "EpisodeRecord":
        """Inverse of :meth:`save_npz` (float32 columns come back as float64)."""
        with np.load(Path(path), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta_json"]))
            if meta.get("format") != "e2e_drive.EpisodeRecord/1":
                raise ValueError(f"{path}: not an EpisodeRecord file")
            kwargs: dict[str, Any] = {}
            for name in STEP_COLUMNS:
                key = f"col_{name}"
                kwargs[name] = npz[key] if key in npz.files else None
            kwargs["neighbours"] = npz["neighbours"].astype(np.float64)
            kwargs["act_ms"] = npz["act_ms"]
            kwargs["stage_ms"] = {k[len("stage_"):]: npz[k] for k in npz.files if k.startswith("stage_")}
        kwargs["collisions"] = meta["collisions"]
        kwargs["lane_changes"] = meta["lane_changes"]
        kwargs["scenario_events"] = meta.get("scenario_events", [])
        for name in _SCALARS:
            if name in meta:
                kwargs[name] = meta[name]
        return cls(**kwargs)


def lane_changes_from_lane_ids(lane_id: Iterable[int]) -> list[dict]:
    """Lane-change events from a per-step lane id column (a change of id = one event).

    Only valid where lane ids keep their meaning across road segments (highway-env's
    straight highways); the runner should record events itself where segments renumber.
    """
    ids = np.asarray(list(lane_id) if not isinstance(lane_id, np.ndarray) else lane_id, dtype=np.int64)
    if ids.size < 2:
        return []
    steps = np.nonzero(ids[1:] != ids[:-1])[0] + 1
    return [{"step": int(s), "from_lane": int(ids[s - 1]), "to_lane": int(ids[s])} for s in steps]


class RecordBuilder:
    """Appends one row per simulation step and builds an :class:`EpisodeRecord`.

    Cheap per step (Python lists); arrays are made once in :meth:`build`.

    >>> b = RecordBuilder(max_neighbours=8)
    >>> b.add_step(t_s=0.0, x_m=0.0, ...)            # doctest: +SKIP
    >>> record = b.build(policy_hz=1, sim_hz=15, scenario_duration_s=40)  # doctest: +SKIP
    """

    def __init__(self, max_neighbours: int = 8) -> None:
        self.max_neighbours = int(max_neighbours)
        self._rows: dict[str, list] = {name: [] for name in STEP_COLUMNS}
        self._neighbours: list[np.ndarray] = []
        self.act_ms: list[float] = []
        self.stage_ms: dict[str, list[float]] = {}
        self.collisions: list[dict] = []
        self.lane_changes: list[dict] = []
        self.scenario_events: list[dict] = []

    @property
    def n_steps(self) -> int:
        return len(self._rows["t_s"])

    def add_step(self, neighbours: Sequence[Sequence[float]] = (), **columns: Any) -> None:
        """Add one simulation step. ``neighbours``: rows of :data:`NEIGHBOUR_FEATURES`, nearest first."""
        unknown = set(columns) - set(STEP_COLUMNS)
        if unknown:
            raise ValueError(f"RecordBuilder.add_step: unknown columns {sorted(unknown)}")
        for name, (_dtype, required, null) in STEP_COLUMNS.items():
            if name in columns:
                self._rows[name].append(columns[name])
            elif required:
                raise ValueError(f"RecordBuilder.add_step: column {name!r} missing")
            else:
                self._rows[name].append(null)
        block = np.full((self.max_neighbours, len(NEIGHBOUR_FEATURES)), np.nan)
        rows = list(neighbours)[: self.max_neighbours]
        if rows:
            block[: len(rows)] = np.asarray(rows, dtype=np.float64)
        self._neighbours.append(block)

    def add_act_ms(self, ms: float, stages: Mapping[str, float] | None = None) -> None:
        """Record the wall-clock time of one ``act`` call (and optional per-stage times)."""
        self.act_ms.append(float(ms))
        for name, value in (stages or {}).items():
            self.stage_ms.setdefault(name, []).append(float(value))

    def add_collision(self, **event: Any) -> None:
        """Record a collision at the current (last added) step unless ``step`` is given."""
        event.setdefault("step", self.n_steps - 1)
        self.collisions.append(event)

    def add_lane_change(self, from_lane: int, to_lane: int, step: int | None = None) -> None:
        """Record a lane change at the current (last added) step unless ``step`` is given."""
        self.lane_changes.append({"step": self.n_steps - 1 if step is None else int(step),
                                  "from_lane": int(from_lane), "to_lane": int(to_lane)})

    def add_scenario_event(self, kind: str, time_s: float, **extra: Any) -> None:
        """Record a scripted scenario event (``time_s`` since reset)."""
        self.scenario_events.append({"kind": kind, "time_s": float(time_s), **extra})

    def build(self, **scalars: Any) -> EpisodeRecord:
        """Make the record; ``scalars`` are policy_hz, sim_hz, route_m, ... (see EpisodeRecord)."""
        known = {f.name for f in fields(EpisodeRecord)}
        unknown = set(scalars) - known
        if unknown:
            raise ValueError(f"RecordBuilder.build: unknown fields {sorted(unknown)}")
        cols: dict[str, Any] = {}
        for name, (dtype, required, null) in STEP_COLUMNS.items():
            values = self._rows[name]
            if not required and all(v is null or (isinstance(v, float) and math.isnan(v)) for v in values):
                cols[name] = None
            else:
                cols[name] = np.asarray(values, dtype=dtype)
        nb = (np.stack(self._neighbours) if self._neighbours
              else np.zeros((0, self.max_neighbours, len(NEIGHBOUR_FEATURES))))
        return EpisodeRecord(neighbours=nb, act_ms=np.asarray(self.act_ms, dtype=np.float64),
                             stage_ms={k: np.asarray(v) for k, v in self.stage_ms.items()},
                             collisions=list(self.collisions), lane_changes=list(self.lane_changes),
                             scenario_events=list(self.scenario_events), **cols, **scalars)

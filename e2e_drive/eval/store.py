"""The episode store of a run directory: run.json, episodes.jsonl (append, load, line checks), the lock.

Each line is written with one ``os.write`` on an ``O_APPEND`` descriptor and fsynced; on load a
truncated last line is dropped (and cut from the file before appending, ``repair=True``); a bad
line elsewhere, or a whole line that lacks a required key (:func:`line_problem`), is an edit by
hand and refused with the line's number. :class:`_DirLock` keeps two evaluations out of one
directory. Layout: see :mod:`e2e_drive.eval.runner`.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from e2e_drive.errors import ConfigError
from e2e_drive.eval.fingerprint import first_difference
from e2e_drive.provenance import git_commit

__all__ = [
    "EPISODES_FILE",
    "IDENTITY_KEYS",
    "REQUIRED_KEYS",
    "RUN_FILE",
    "SUMMARY_FILE",
    "TIMING_KEYS",
    "TIMING_PREFIXES",
    "TRAJECTORY_DIR",
    "append_line",
    "episode_key",
    "line_problem",
    "load_episodes",
    "load_run",
    "strip_timings",
]

EPISODES_FILE = "episodes.jsonl"
RUN_FILE = "run.json"
SUMMARY_FILE = "summary.json"
TRAJECTORY_DIR = "trajectories"

#: Keys that name an episode: every line starts with them.
IDENTITY_KEYS: tuple[str, ...] = ("agent", "scenario", "condition", "seed")


def _derived(name: str) -> tuple[str, ...]:
    """REQUIRED_KEYS (identity and the metrics declared ``required``), TIMING_KEYS and
    TIMING_PREFIXES (metrics declared ``timing``), read from the declarations."""
    from e2e_drive.eval import metric_defs

    if name == "REQUIRED_KEYS":
        return IDENTITY_KEYS + metric_defs.required_keys()
    return metric_defs.timing_keys() if name == "TIMING_KEYS" else metric_defs.timing_prefixes()


# Declared for type checkers and linters; __getattr__ gives the values (read from the declarations).
REQUIRED_KEYS: tuple[str, ...]
TIMING_KEYS: tuple[str, ...]
TIMING_PREFIXES: tuple[str, ...]


def __getattr__(name: str) -> Any:
    if name in ("REQUIRED_KEYS", "TIMING_KEYS", "TIMING_PREFIXES"):
        return _derived(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


logger = logging.getLogger(__name__)


def episode_key(line: Mapping[str, Any]) -> tuple[str, str, str, int]:
    """(agent, scenario, condition, seed) of an episode line."""
    return (str(line["agent"]), str(line["scenario"]), str(line["condition"]), int(line["seed"]))


def strip_timings(line: Mapping[str, Any]) -> dict[str, Any]:
    """The line without wall-clock measurements (what must be identical across runs and backends)."""
    keys, prefixes = _derived("TIMING_KEYS"), _derived("TIMING_PREFIXES")
    return {k: v for k, v in line.items() if k not in keys and not k.startswith(prefixes)}


def append_line(path: str | Path, line: Mapping[str, Any]) -> None:
    """Append one JSON line with a single write on an O_APPEND descriptor, then fsync."""
    data = (json.dumps(line, separators=(",", ":"), allow_nan=False) + "\n").encode()
    fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # only on exotic file systems
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def line_problem(row: Any) -> str | None:
    """What is wrong with a parsed episode line (a missing required key, a wrong type), or None.

    Types come from the declarations: identity keys and ``status`` are text, ``seed`` an
    integer, a rate true/false/null, any other numeric metric a number or null."""
    from e2e_drive.eval import metric_defs

    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    required = IDENTITY_KEYS + metric_defs.required_keys()
    missing = [k for k in required if k not in row]
    if missing:
        return f"missing key '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    for key in required:
        value = row[key]
        if key == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"key 'seed' = {value!r}: expected an integer"
            continue
        kind = "text" if key in IDENTITY_KEYS or key == "status" else metric_defs.get_metric(key).kind
        if kind == "text" and not isinstance(value, str):
            return f"key '{key}' = {value!r}: expected a string"
        if kind == "rate" and value is not None and not isinstance(value, bool):
            return f"key '{key}' = {value!r}: expected true, false or null"
        if kind in ("continuous", "score", "count", "info") and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"key '{key}' = {value!r}: expected a number or null"
    return None


def load_episodes(run_dir: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """The episode lines of a run directory; a truncated or unreadable *last* line is ignored.

    ``repair=True`` also cuts such a last line from the file (done before appending on resume).
    A bad line elsewhere means the file was edited: ConfigError naming the line. So does a whole
    line (JSON, newline-terminated) anywhere that lacks a required key or has a value of the
    wrong type (:func:`line_problem`): a killed append can cut a line short, never produce that.
    """
    path = Path(run_dir) / EPISODES_FILE
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows: list[dict[str, Any]] = []
    pos = 0
    good_end = 0
    n = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        chunk = raw[pos:] if end < 0 else raw[pos:end]
        n += 1
        last = end < 0 or end == len(raw) - 1
        try:
            if end < 0:
                raise ValueError("no newline: truncated")
            row = json.loads(chunk)
        except ValueError as exc:
            if last:
                break
            if not chunk.strip():
                pos = end + 1
                good_end = pos
                continue
            raise ConfigError(f"{path}: line {n} is not a valid episode line ({exc}); the file was edited "
                              f"by hand? Remove that line to resume") from None
        problem = line_problem(row)
        if problem is not None:
            raise ConfigError(f"{path}: line {n}: {problem}; the file was edited by hand? Remove or fix that line")
        rows.append(row)
        pos = end + 1
        good_end = pos
    if repair and good_end < len(raw):
        with path.open("r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return rows


def _prepare_dir(out_dir: Path, config: dict[str, Any], agent_specs: Mapping[str, str] | None = None) -> None:
    """Create the run directory, or check that an existing one was made by the same configuration."""
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        try:
            stored = json.loads(run_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{run_file}: unreadable ({exc}); not an e2e-drive run directory?") from None
        old = stored.get("config") if isinstance(stored, dict) else None
        if old != config:
            where = first_difference(old, config) if isinstance(old, dict) else "format"
            raise ConfigError(f"--out {out_dir}: made by a different configuration (differs at '{where}'); "
                              f"results are not mixed: use another --out, or the same command as before")
        return
    if (out_dir / EPISODES_FILE).exists():
        raise ConfigError(f"--out {out_dir}: has {EPISODES_FILE} but no {RUN_FILE}; not resuming an unknown run")
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"config": config, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": git_commit(),
            "python": sys.version.split()[0], "agent_specs": dict(agent_specs or {})}
    tmp = run_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, run_file)


def _trajectory_name(key: tuple[str, str, str, int]) -> str:
    safe = ["".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(part)) for part in key]
    return "__".join(safe) + ".npz"


class _DirLock:
    """An exclusive lock on a run directory, so two evaluations never run the same episodes at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> "_DirLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return self
        self.fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise ConfigError(f"--out {self.path.parent}: another e2e-drive evaluate is running in this directory; "
                              f"wait for it (a re-run afterwards resumes)") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(run.json contents, episode lines sorted by key) of a run directory; ConfigError if it is not one.

    Imports the run's metric modules (run.json), so that summaries of its lines know the
    declarations of its metrics; one that cannot be imported is logged and left out.
    """
    d = Path(run_dir)
    run_file = d / RUN_FILE
    if not run_file.is_file():
        raise ConfigError(f"{d}: not an e2e-drive run directory (no {RUN_FILE}); make one with e2e-drive evaluate")
    try:
        meta = json.loads(run_file.read_text())
    except ValueError as exc:
        raise ConfigError(f"{run_file}: not valid JSON ({exc})") from None
    for entry in (meta.get("config") or {}).get("metric_modules", ()):
        try:
            importlib.import_module(entry["module"])
        except Exception as exc:
            logger.warning("%s: cannot import the run's metric module %s (%s: %s); its metrics are left out of "
                           "summaries", d, entry["module"], type(exc).__name__, exc)
    rows = sorted(load_episodes(d), key=episode_key)
    return meta, rows

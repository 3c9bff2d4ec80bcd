"""Reuse an earlier run's episodes of the agents that did not change, so adding an agent costs only its own.

``evaluate`` resumes a run directory only under exactly the same configuration (run.json). A benchmark
with one more agent, or fewer or more seeds, has another configuration; :func:`prepare_reuse` brings the
directory to the new configuration first, keeping each episode line whose agent is unchanged (its entry in
run.json: file content and the digests of the files it names; and its fingerprint in ``fingerprints.json``:
:func:`e2e_drive.eval.fingerprint.agent_fingerprint`, with the toolkit's source digest) and whose seed is
still planned. Every other line moves to ``superseded.jsonl`` (never deleted), and run.json is rewritten;
``evaluate`` then resumes as usual and runs only the missing episodes.

A change anywhere else (the scenarios' configs, the conditions, the episode budget, the package version)
is left to ``evaluate``, which refuses the directory as before.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from e2e_drive.eval.store import EPISODES_FILE, RUN_FILE, _DirLock, load_episodes

__all__ = ["FINGERPRINTS_FILE", "SUPERSEDED_FILE", "prepare_reuse", "run_fingerprints"]

FINGERPRINTS_FILE = "fingerprints.json"
SUPERSEDED_FILE = "superseded.jsonl"
#: Configuration keys that may differ between the runs whose episodes are reused: the agents (each
#: compared on its own) and the seeds (lines of seeds no longer planned are set aside).
_PER_AGENT_KEYS = ("agents", "episodes", "seeds")


def run_fingerprints(agent_specs: Mapping[str, str]) -> dict[str, Any]:
    """{"toolkit": ..., "agents": {label: fingerprint}} for a plan's agents (label -> resolved spec)."""
    from e2e_drive.eval.fingerprint import agent_fingerprint, toolkit_fingerprint

    tk = toolkit_fingerprint()
    return {"toolkit": {k: tk[k] for k in ("version", "source_sha256", "libraries")},
            "agents": {label: agent_fingerprint(spec) for label, spec in agent_specs.items()}}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def prepare_reuse(out_dir: str | Path, config: Mapping[str, Any], agent_specs: Mapping[str, str],
                  fingerprints: Mapping[str, Any]) -> dict[str, Any]:
    """Make ``out_dir`` ready for ``evaluate`` with ``config`` (a plan's), keeping unchanged agents' episodes.

    Returns {"kept": n, "superseded": {label: (n, why)}}. Does nothing to a directory without run.json, or
    whose run differs in more than agents and seeds (``evaluate`` refuses that one with its own message).
    Writes ``fingerprints.json`` whenever the run can go on, for the next run to compare with.
    """
    out = Path(out_dir)
    result: dict[str, Any] = {"kept": 0, "superseded": {}}
    run_file = out / RUN_FILE
    if not run_file.is_file():
        if not (out / EPISODES_FILE).exists():  # a new directory (evaluate refuses lines without run.json)
            out.mkdir(parents=True, exist_ok=True)
            _write_json(out / FINGERPRINTS_FILE, fingerprints)
        return result
    stored = _read_json(run_file)
    old = stored.get("config") if isinstance(stored, dict) else None
    if not isinstance(old, dict):
        return result
    core = lambda c: {k: v for k, v in c.items() if k not in _PER_AGENT_KEYS}  # noqa: E731
    if core(old) != core(dict(config)):
        return result
    old_fp = _read_json(out / FINGERPRINTS_FILE)
    new_agents = {a["label"]: a for a in config["agents"]}
    old_agents = {a["label"]: a for a in old.get("agents", [])}
    toolkit_same = old_fp is None or old_fp.get("toolkit") == fingerprints.get("toolkit")

    def why_not(label: str) -> str | None:
        if label not in new_agents:
            return "no longer in the run"
        if old_agents.get(label) != new_agents[label]:
            return "its agent file or the files it names changed"
        if not toolkit_same:
            return "the toolkit's code or libraries changed"
        if old_fp is not None and (old_fp.get("agents") or {}).get(label) != fingerprints["agents"].get(label):
            from e2e_drive.eval.fingerprint import describe_change

            return describe_change(label, (old_fp.get("agents") or {}).get(label),
                                   fingerprints["agents"].get(label)) or "its fingerprint changed"
        return None

    seeds = set(config["seeds"])
    out.mkdir(parents=True, exist_ok=True)
    with _DirLock(out):
        agent_reason: dict[str, str | None] = {}
        keep, drop = [], []
        for row in load_episodes(out, repair=True):
            label = str(row["agent"])
            if label not in agent_reason:
                agent_reason[label] = why_not(label)
            why = agent_reason[label] or (None if int(row["seed"]) in seeds else "its seed is no longer planned")
            if why is None:
                keep.append(row)
                continue
            drop.append(row)
            n, _ = result["superseded"].get(label, (0, why))
            result["superseded"][label] = (n + 1, why)
        if drop:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with (out / SUPERSEDED_FILE).open("a") as fh:
                for row in drop:
                    fh.write(json.dumps({"superseded": stamp, **row}, separators=(",", ":")) + "\n")
            tmp = out / (EPISODES_FILE + ".tmp")
            tmp.write_text("".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in keep))
            os.replace(tmp, out / EPISODES_FILE)
        if old != dict(config):
            stored["config"] = json.loads(json.dumps(config))
            stored["agent_specs"] = dict(agent_specs)
            _write_json(run_file, stored)
        _write_json(out / FINGERPRINTS_FILE, fingerprints)
        result["kept"] = len(keep)
    return result

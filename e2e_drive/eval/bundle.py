"""Result bundles: a benchmark's result in one file that anyone can check by re-running it.

``e2e-drive benchmark`` writes ``DIR/bundle.json.gz``: the episode lines, the summary tables, the suite
and its version, the toolkit's version, commit and source digest, each agent's spec and fingerprint
(agent file content, digests of the files it names such as checkpoints, source digest of its class), each
scenario's code digest, the run's configuration (validated scenario configs per condition, seeds) and the
command, with a sha256 ``digest`` over all of it (:func:`content_digest`): a bundle edited afterwards no
longer matches its digest and is refused. The digest detects changes, it does not sign: the proof that the
episodes are what the agent does is :func:`verify_bundle`, which re-runs them.

:func:`verify_bundle` re-runs a sample of the bundle's episodes (or all) with the agents at hand and
compares each new line with the stored one, timings aside; a mismatch is explained by what changed (the
agent's file, checkpoint or code, the scenario's code, the toolkit's version, code or libraries).
It writes ``<bundle>.verified.json`` beside the bundle, which :mod:`e2e_drive.eval.leaderboard` shows.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from e2e_drive.errors import ConfigError

__all__ = ["BUNDLE_FILE", "BUNDLE_FORMAT", "content_digest", "load_bundle", "verification_path", "verify_bundle",
           "write_bundle"]

BUNDLE_FORMAT = "e2e_drive.bundle/1"
BUNDLE_FILE = "bundle.json.gz"
#: Keys of an episode line that never have to match on a re-run: wall-clock timings (the declared timing
#: metrics, see strip_timings), the traceback text of an error (it names this machine's paths) and where
#: a trajectory file was written.
UNCHECKED_KEYS = ("error", "trajectory_file")


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def content_digest(bundle: Mapping[str, Any]) -> str:
    """sha256 over the bundle's contents (every key but ``digest`` and the ``_path`` a loaded bundle carries),
    as canonical JSON."""
    return hashlib.sha256(_canonical({k: v for k, v in bundle.items()
                                      if k != "digest" and not k.startswith("_")})).hexdigest()


def write_bundle(run_dir: str | Path, *, suite: str, suite_version: str, command: str,
                 submitted: Sequence[str] = (), tables: Mapping[str, Any] | None = None,
                 out: str | Path | None = None) -> Path:
    """Write the result bundle of a run directory (default ``DIR/bundle.json.gz``); return its path."""
    from e2e_drive.eval.fingerprint import (
        agent_fingerprint,
        portable_spec,
        scenario_code_digest,
        toolkit_fingerprint,
    )
    from e2e_drive.eval.store import load_run
    from e2e_drive.provenance import machine_line

    run_dir = Path(run_dir)
    meta, rows = load_run(run_dir)
    specs = meta.get("agent_specs") or {}
    config = meta["config"]
    agents = {a["label"]: {"spec": portable_spec(specs.get(a["label"], "")),
                           "submitted": a["label"] in submitted,
                           "fingerprint": agent_fingerprint(specs[a["label"]]) if a["label"] in specs else None}
              for a in config["agents"]}
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
        "suite": suite,
        "suite_version": suite_version,
        "toolkit": toolkit_fingerprint(),
        "machine": machine_line(),
        "run": config,
        "agents": agents,
        "scenarios": {e["scenario"]: scenario_code_digest(e["scenario"]) for e in config["envs"]},
        "summary": {"n_episodes": len(rows), "tables": dict(tables or {})},
        "episodes": rows,
    }
    bundle = json.loads(_canonical(bundle))
    bundle["digest"] = content_digest(bundle)
    path = Path(out) if out is not None else run_dir / BUNDLE_FILE
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        fh.write(json.dumps(bundle, separators=(",", ":")).encode())
    tmp.replace(path)
    return path


def _bundle_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / BUNDLE_FILE
    if not p.is_file():
        raise ConfigError(f"{path}: no such bundle (e2e-drive benchmark writes DIR/{BUNDLE_FILE})")
    return p


def load_bundle(path: str | Path) -> dict[str, Any]:
    """Read a bundle (a .json.gz or .json file, or a run directory holding bundle.json.gz) and check its digest.

    ConfigError (one line) for a file that is not a bundle, and for a digest mismatch (tampered)."""
    p = _bundle_path(path)
    try:
        raw = p.read_bytes()
        text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        bundle = json.loads(text)
    except (OSError, EOFError, ValueError) as exc:
        raise ConfigError(f"{p}: not a readable result bundle ({type(exc).__name__}: {exc})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        found = bundle.get("format") if isinstance(bundle, dict) else type(bundle).__name__
        raise ConfigError(f"{p}: not a result bundle of format {BUNDLE_FORMAT} (found {found!r})")
    missing = [k for k in ("digest", "suite_version", "run", "agents", "episodes", "toolkit") if k not in bundle]
    if missing:
        raise ConfigError(f"{p}: bundle lacks key '{missing[0]}'")
    actual = content_digest(bundle)
    if actual != bundle["digest"]:
        raise ConfigError(f"{p}: digest mismatch: the bundle was changed after it was written (stored sha256 "
                          f"{str(bundle['digest'])[:12]}..., contents {actual[:12]}...); ask for the original")
    bundle["_path"] = str(p)
    return bundle


def verification_path(bundle_path: str | Path) -> Path:
    """Where verify records its result: beside the bundle, ``NAME.verified.json``."""
    p = Path(bundle_path)
    name = p.name.removesuffix(".gz").removesuffix(".json")
    return p.with_name(name + ".verified.json")


# ---------------------------------------------------------------------------------------- verify
def _spec_at_hand(label: str, entry: Mapping[str, Any], override: Mapping[str, str]) -> str:
    from e2e_drive.provenance import REPO_ROOT

    if label in override:
        spec = override[label]
    else:
        spec = str(entry.get("spec") or "")
    p = Path(spec)
    if p.suffix.lower() in (".toml", ".yaml", ".yml"):
        for cand in ((p,) if p.is_absolute() else (Path.cwd() / p, REPO_ROOT / p)):
            if cand.is_file():
                return str(cand.resolve())
        raise ConfigError(f"agent '{label}': its agent file {spec} is not here; give --agent {label}=PATH")
    return spec


def _comparable(line: Mapping[str, Any]) -> dict[str, Any]:
    from e2e_drive.eval.store import strip_timings

    return {k: v for k, v in strip_timings(line).items() if k not in UNCHECKED_KEYS}


def _pick(rows: Sequence[Mapping[str, Any]], sample: int | None, seed: int) -> list[Mapping[str, Any]]:
    """All rows (sample None), or ``sample`` of them spread over the agents (round robin, random within)."""
    import numpy as np

    if sample is None or sample >= len(rows):
        return list(rows)
    rng = np.random.default_rng(seed)
    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_agent.setdefault(str(r["agent"]), []).append(r)
    queues = {a: [rs[i] for i in rng.permutation(len(rs))] for a, rs in sorted(by_agent.items())}
    out: list[Mapping[str, Any]] = []
    while len(out) < sample:
        for a in list(queues):
            if queues[a] and len(out) < sample:
                out.append(queues[a].pop())
    return out


def _reasons(bundle: Mapping[str, Any], specs: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """What differs between the bundle's world and this one: per agent, per scenario, and the toolkit's."""
    from e2e_drive.eval.fingerprint import agent_fingerprint, describe_change, scenario_code_digest, toolkit_fingerprint

    agents = {}
    for label, spec in specs.items():
        why = describe_change(label, (bundle["agents"].get(label) or {}).get("fingerprint"), agent_fingerprint(spec))
        if why:
            agents[label] = why
    scenarios = {}
    for name, digest in (bundle.get("scenarios") or {}).items():
        if digest != scenario_code_digest(name):
            scenarios[name] = f"scenario '{name}': its code changed"
    old, new = bundle["toolkit"], toolkit_fingerprint()
    toolkit = []
    if old.get("version") != new["version"]:
        toolkit.append(f"toolkit version {old.get('version')} in the bundle, {new['version']} here")
    if old.get("source_sha256") != new["source_sha256"]:
        toolkit.append(f"toolkit code changed (bundle commit {str(old.get('commit'))[:10]}, here "
                       f"{str(new['commit'])[:10]}{' with uncommitted changes' if new['uncommitted_changes'] else ''})")
    libs_old, libs_new = old.get("libraries") or {}, new["libraries"]
    changed = [f"{k} {libs_old.get(k)} -> {libs_new.get(k)}" for k in sorted(set(libs_old) | set(libs_new))
               if libs_old.get(k) != libs_new.get(k)]
    if changed:
        toolkit.append("libraries changed: " + ", ".join(changed))
    return agents, scenarios, toolkit


def verify_bundle(path: str | Path, sample: int | None = 12, *, agents: Mapping[str, str] | None = None,
                  workers: int = 1, sample_seed: int | None = None,
                  echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Re-run ``sample`` of a bundle's episodes (None: all) with the agents at hand; compare line by line.

    agents: label -> spec to use instead of the bundle's (an agent file elsewhere). workers: 0 runs the
    episodes in this process, else in that many worker processes. Returns {"checked", "matched",
    "mismatches": [...], "reasons": [...], "sample_seed"} and writes ``<bundle>.verified.json``.
    An agent that cannot be loaded is a ConfigError (one line)."""
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.eval.backends import _run_inline, _run_pool
    from e2e_drive.eval.plan import job_for
    from e2e_drive.eval.store import episode_key

    bundle = load_bundle(path)
    override = dict(agents or {})
    unknown = sorted(set(override) - set(bundle["agents"]))
    if unknown:
        raise ConfigError(f"--agent {unknown[0]}=...: the bundle has no agent '{unknown[0]}'; its agents: "
                          f"{', '.join(bundle['agents'])}")
    if sample is not None and (isinstance(sample, bool) or sample < 1):
        raise ConfigError(f"--sample {sample!r}: expected a positive integer")
    seed = secrets.randbits(31) if sample_seed is None else int(sample_seed)
    rows = sorted(bundle["episodes"], key=episode_key)
    chosen = _pick(rows, sample, seed)
    labels = list(dict.fromkeys(str(r["agent"]) for r in chosen))
    specs = {}
    for label in labels:
        spec = _spec_at_hand(label, bundle["agents"].get(label) or {}, override)
        try:
            load_agent(spec)
        except ConfigError as exc:
            raise ConfigError(f"agent '{label}' ({spec}) cannot be loaded: {exc}") from None
        except Exception as exc:  # a user's class that fails in its own way
            raise ConfigError(f"agent '{label}' ({spec}) cannot be loaded: {type(exc).__name__}: {exc}") from None
        specs[label] = spec
    agent_why, scenario_why, toolkit_why = _reasons(bundle, specs)
    meta = {"config": bundle["run"], "agent_specs": specs}
    jobs = [job_for(meta, str(r["agent"]), str(r["scenario"]), str(r["condition"]), int(r["seed"])) for r in chosen]
    stored = {episode_key(r): r for r in chosen}
    echo(f"{bundle['_path']}: {bundle['suite_version']}, {len(rows)} episodes, agents {', '.join(bundle['agents'])}; "
         f"re-running {len(jobs)}" + ("" if sample is None or sample >= len(rows) else f" (sample seed {seed})"))
    mismatches: list[dict[str, Any]] = []
    matched = 0

    def on_result(line: dict[str, Any]) -> None:
        nonlocal matched
        key = episode_key(line)
        line.pop("_trajectory_npz", None)
        old, new = _comparable(stored[key]), _comparable(line)
        where = "seed {3}: {0} on {1}/{2}".format(*key)
        if old == new:
            matched += 1
            echo(f"  match     {where}")
            return
        from e2e_drive.eval.fingerprint import first_difference

        at = first_difference(old, new) or "?"
        why = [r for r in (agent_why.get(key[0]), scenario_why.get(_scenario_of(bundle, key[1]))) if r] + toolkit_why
        reason = "; ".join(why) if why else ("nothing changed in the agent, the scenario or the toolkit: the "
                                             "episode does not reproduce here")
        mismatches.append({"key": list(key), "at": at, "bundle": old.get(at.split(".")[0]),
                           "here": new.get(at.split(".")[0]), "reason": reason})
        echo(f"  MISMATCH  {where}: differs at '{at}' (bundle {old.get(at.split('.')[0])!r}, here "
             f"{new.get(at.split('.')[0])!r}); reason: {reason}")

    if workers == 0:
        _run_inline(jobs, on_result)
    else:
        _run_pool(jobs, min(workers, len(jobs)) or 1, on_result)
    notes = list(agent_why.values()) + list(scenario_why.values()) + toolkit_why
    result = {"bundle": bundle["_path"], "bundle_digest": bundle["digest"], "suite_version": bundle["suite_version"],
              "checked": len(jobs), "matched": matched, "all": sample is None or sample >= len(rows),
              "sample_seed": seed, "mismatches": mismatches, "changes": notes,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    verification_path(bundle["_path"]).write_text(json.dumps(result, indent=1))
    verdict = "all match" if matched == len(jobs) else f"{len(jobs) - matched} do not match"
    echo(f"{matched}/{len(jobs)} re-run episodes match their bundle lines ({verdict}, timings aside)")
    if notes and matched == len(jobs):
        echo("note: " + "; ".join(notes) + " (the sampled episodes match all the same)")
    return result


def _scenario_of(bundle: Mapping[str, Any], name: str) -> str:
    """The registered scenario behind a run's scenario entry name (``cut_in@hard`` -> ``cut_in``)."""
    return next((e["scenario"] for e in bundle["run"]["envs"] if e["name"] == name), name)

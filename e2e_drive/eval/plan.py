"""The run plan: validate a run's scenarios, conditions, agents and seeds before any episode runs,
and lay out its episodes (:class:`EpisodeJob`, seed-major order) and its configuration (run.json).

Privilege check: a camera-only run (the default) refuses an agent that declares
``reads_ground_truth`` unless it is a reference (``is_reference``, the expert). Declared cameras
are checked against every scenario and condition.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from e2e_drive.errors import ConfigError
from e2e_drive.eval.episode import DEFAULT_EPISODE_BUDGET_S, MAX_NEIGHBOURS, EpisodeJob

__all__ = ["RUN_FORMAT", "RunPlan", "job_for", "plan_run", "parse_difficulties", "difficulty_entry_name"]

RUN_FORMAT = "e2e_drive.run/1"


def parse_difficulties(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"easy,hard"`` (or a list) -> ("easy", "hard"); None or "" -> (); an unknown level is a ConfigError."""
    from e2e_drive.scenarios.base import DIFFICULTIES

    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    levels = [str(v).strip() for v in items if str(v).strip()]
    for level in levels:
        if level not in DIFFICULTIES:
            raise ConfigError(f"--difficulty {level!r}: unknown level; levels: {', '.join(DIFFICULTIES)}")
    return tuple(dict.fromkeys(levels))


def difficulty_entry_name(name: str, level: str, own_level: str) -> str:
    """The scenario name a run gives one difficulty level of a scenario file: the file's name at the file's own
    level (``medium`` unless it names another), ``name@level`` at every other level, so that episode keys
    (agent, scenario, condition, seed) stay unique and a run at the file's own level pairs with one without
    ``--difficulty``."""
    return name if level == own_level else f"{name}@{level}"


@dataclass
class RunPlan:
    """A run's configuration (stored as run.json) and its episodes in scheduling order."""

    config: dict[str, Any]
    jobs: list[EpisodeJob] = field(default_factory=list)
    #: Agent label -> the spec to load it with (resolved file path or package.module:Class);
    #: stored in run.json beside the configuration, for re-simulation by the report.
    agent_specs: dict[str, str] = field(default_factory=dict)


def _package_version() -> str:
    import e2e_drive

    return str(getattr(e2e_drive, "__version__", "unknown"))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def named_files(params: Any, base: Path) -> list[tuple[str, Path]]:
    """The files an agent file's ``params`` name: every string value (nested tables and lists
    included) that is a path to an existing file, absolute or relative to ``base`` (the agent
    file's folder), as (the value as written, the path)."""
    out: list[tuple[str, Path]] = []

    def scan(value: Any) -> None:
        if isinstance(value, str) and value and len(value) < 1000:
            cand = Path(value) if Path(value).is_absolute() else base / value
            try:
                if cand.is_file():
                    out.append((value, cand))
            except OSError:
                pass
        elif isinstance(value, dict):
            for v in value.values():
                scan(v)
        elif isinstance(value, list):
            for v in value:
                scan(v)

    scan(params)
    return out


def _agent_fingerprint(spec: str) -> dict[str, Any]:
    """What defines an agent for run.json: its file's content and the files it names, or its class path."""
    p = Path(spec)
    if p.suffix.lower() in (".toml", ".yaml", ".yml") or p.is_file():
        from e2e_drive.agents.loading import _read_file

        data = _read_file(p)
        files = {}
        for value, path in named_files(data.get("params", {}), p.resolve().parent):
            try:
                files[value] = _sha256(path)
            except OSError:
                pass
        return {"file": p.name, "content": data, "referenced_files_sha256": files}
    return {"class": spec, "source_sha256": _class_source_digest(spec)}


def _class_source_digest(spec: str) -> str | None:
    """sha256 of the source behind a ``package.module:Class`` agent: the module's file, or for a
    module inside a package of the user's (not e2e_drive, not an installed library) every .py file
    of that top-level package, so that editing the agent between an interrupt and a resume is seen.

    None when the module has no source file (a builtin or compiled module).
    """
    import importlib
    import importlib.util

    module_name = spec.partition(":")[0]
    try:
        module = importlib.import_module(module_name)
    except Exception:  # load_agent already reported a module that cannot be imported
        return None
    origin = getattr(module, "__file__", None)
    if not origin:
        return None
    top = module_name.partition(".")[0]
    files = [Path(origin)]
    top_spec = importlib.util.find_spec(top) if top != module_name else None
    roots = list(getattr(top_spec, "submodule_search_locations", None) or []) if top_spec else []
    if roots and top != "e2e_drive" and not any("site-packages" in r or "dist-packages" in r for r in roots):
        files = sorted({f for r in roots for f in Path(r).rglob("*.py")} | {Path(origin)})
    h = hashlib.sha256()
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue
        h.update(f.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def _agent_label(spec: str) -> str:
    p = Path(spec)
    if p.suffix.lower() in (".toml", ".yaml", ".yml") or p.is_file():
        return p.stem
    return spec.rpartition(":")[2] or spec


def _check_cameras(label: str, needs: Any, cfg: Mapping[str, Any], where: str) -> None:
    if needs.cameras is None:
        return
    cams = cfg["cameras"]
    for name, need in needs.cameras.items():
        table = cams.get(name)
        if table is None:
            raise ConfigError(f"agent '{label}' needs camera '{name}', which {where} does not have "
                              f"(cameras: {', '.join(sorted(cams))})")
        difference = need.differs_from(table, f"{where} cameras.{name}")
        if difference is not None:
            raise ConfigError(f"agent '{label}' needs camera '{name}' as kind/width/height/grayscale "
                              f"{difference[0]}, {where} has {difference[1]}")


def _metric_module_entries(modules: Sequence[str]) -> list[dict[str, Any]]:
    """Import each module of metrics of your own; what run.json records of it: its name, the
    digest of its source (an edit between interrupt and resume is refused) and its metrics."""
    from e2e_drive.eval.metric_defs import metrics_of_modules

    entries = []
    for name in dict.fromkeys(modules):
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"--metrics-module {name!r}: expected a module name (my_metrics, mypkg.metrics)")
        try:
            importlib.import_module(name)
        except Exception as exc:
            why = (str(exc).splitlines() or [""])[0]
            raise ConfigError(f"--metrics-module {name}: cannot import it ({type(exc).__name__}: {why}); "
                              f"is its folder on PYTHONPATH?") from None
        declared = metrics_of_modules([name])
        if not declared:
            raise ConfigError(f"--metrics-module {name}: it registers no metric with a compute function "
                              f"(e2e_drive.eval.metric_defs.register_metric)")
        entries.append({"module": name, "source_sha256": _class_source_digest(name),
                        "metrics": [m.name for m in declared]})
    return entries


def plan_run(envs: Sequence[str | Path], agents: Sequence[str], episodes: int, seed: int,
             conditions: Sequence[str] | str | None = None, camera_only: bool = True,
             save_trajectories: bool = False, episode_budget_s: float = DEFAULT_EPISODE_BUDGET_S,
             max_neighbours: int = MAX_NEIGHBOURS, sanitize_actions: bool = False,
             metric_modules: Sequence[str] = (), difficulties: str | Sequence[str] | None = None) -> RunPlan:
    """Validate everything before any episode runs and lay out the jobs (seed-major order).

    metric_modules: modules that declare metrics of their own; run.json records them only
    when there are some (so a run without them keeps the configuration it always had).
    difficulties: levels (``"easy,medium,hard"``) to run every scenario file at; each file's scenario
    must declare difficulty levels. Each level is its own scenario entry, named by
    :func:`difficulty_entry_name` (``cut_in``, ``cut_in@hard``); its episode lines carry ``difficulty``.
    """
    from e2e_drive.agents.base import agent_needs
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.eval.conditions import apply_condition, resolve_conditions
    from e2e_drive.registration import scenario_of
    from e2e_drive.scenarios import load_scenario

    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ConfigError(f"--episodes {episodes!r}: expected a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed {seed!r}: expected an integer >= 0")
    if not envs:
        raise ConfigError("--env: give at least one scenario file (envs/*.toml)")
    if not agents:
        raise ConfigError("--agent: give at least one agent (agents/*.toml or package.module:Class)")
    if episode_budget_s is not None and not (episode_budget_s > 0):
        raise ConfigError(f"--episode-budget-s {episode_budget_s!r}: expected a positive number of seconds")
    conds = resolve_conditions(conditions)
    metric_entries = _metric_module_entries(metric_modules)
    levels = parse_difficulties(difficulties)

    from e2e_drive.scenarios.base import DEFAULT_DIFFICULTY, get_scenario

    scenarios = []
    for path in envs:
        sf = load_scenario(path)
        scenario = scenario_of(sf.env_id, source=str(path))
        declaration = get_scenario(scenario, source=str(path))
        if levels and not declaration.difficulties:
            raise ConfigError(f"--difficulty: scenario file {path} (scenario '{scenario}') declares no difficulty "
                              f"levels; run it without --difficulty, or give only files of the ability suite")
        own_level = str(sf.config.get("difficulty", DEFAULT_DIFFICULTY))
        for level in levels or (None,):
            raw = dict(sf.config) if level is None else {**sf.config, "difficulty": level}
            name = sf.name if level is None else difficulty_entry_name(sf.name, level, own_level)
            configs = {c.name: apply_condition(c, scenario, raw, source=str(path)) for c in conds}
            scenarios.append((name, sf, scenario, declaration.ability, configs))
    names = [name for name, *_ in scenarios]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"--env: two scenario files are named '{dup}'; scenario names (file stems) must differ")

    agent_entries = []
    for spec in agents:
        spec = str(spec)
        resolved = str(Path(spec).resolve()) if Path(spec).is_file() else spec
        agent = load_agent(resolved)
        needs = agent_needs(agent)
        label = _agent_label(spec)
        if needs.reads_ground_truth and camera_only and not needs.is_reference:
            raise ConfigError(
                f"agent '{label}' ({spec}) reads ground truth (needs.reads_ground_truth) and is not a reference; "
                f"this is a camera-only comparison: remove it, or allow privileged agents (--allow-ground-truth)")
        for _, sf, _, _, configs in scenarios:
            for cname, cfg in configs.items():
                _check_cameras(label, needs, cfg, f"scenario {sf.path} (condition {cname})")
        agent_entries.append({"label": label, "spec": resolved, "given": spec,
                              "reads_ground_truth": bool(needs.reads_ground_truth),
                              "is_reference": bool(needs.is_reference)})
    labels = [a["label"] for a in agent_entries]
    if len(set(labels)) != len(labels):
        for a in agent_entries:  # fall back to the full spec where stems collide
            if labels.count(a["label"]) > 1:
                a["label"] = a["given"]
        labels = [a["label"] for a in agent_entries]
        dup = next((n for n in labels if labels.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(f"--agent: '{dup}' is given twice")

    seeds = list(range(seed, seed + episodes))
    budget = float(episode_budget_s) if episode_budget_s else 0.0
    config = {
        "format": RUN_FORMAT,
        "package_version": _package_version(),
        "episodes": episodes,
        "seed": seed,
        "seeds": seeds,
        "camera_only": bool(camera_only),
        "episode_budget_s": budget,
        "save_trajectories": bool(save_trajectories),
        "max_neighbours": int(max_neighbours),
        "sanitize_actions": bool(sanitize_actions),
        **({"metric_modules": metric_entries} if metric_entries else {}),
        "envs": [{"name": name, "file": sf.path.name, "env_id": sf.env_id, "scenario": scenario,
                  "description": sf.description, "configs": configs, **({"ability": ability} if ability else {})}
                 for name, sf, scenario, ability, configs in scenarios],
        "conditions": [c.to_dict() for c in conds],
        "agents": [{"label": a["label"], "reads_ground_truth": a["reads_ground_truth"],
                    "is_reference": a["is_reference"], **_agent_fingerprint(a["spec"])} for a in agent_entries],
    }
    config = json.loads(json.dumps(config))
    jobs = [EpisodeJob(agent=a["label"], agent_spec=a["spec"], scenario=name, env_id=sf.env_id,
                       config=configs[c.name], condition=c.name, seed=s, budget_s=budget,
                       save_trajectory=bool(save_trajectories), reference=a["is_reference"],
                       max_neighbours=int(max_neighbours), sanitize_actions=bool(sanitize_actions),
                       metric_modules=tuple(e["module"] for e in metric_entries), ability=ability)
            for s in seeds for name, sf, _, ability, configs in scenarios for c in conds for a in agent_entries]
    return RunPlan(config=config, jobs=jobs, agent_specs={a["label"]: a["spec"] for a in agent_entries})


def job_for(meta: Mapping[str, Any], agent: str, scenario: str, condition: str, seed: int,
            save_trajectory: bool = False) -> EpisodeJob:
    """The job that produced an episode of a run (from its run.json), to re-simulate it exactly."""
    config = meta["config"]
    env = next((e for e in config["envs"] if e["name"] == scenario), None)
    if env is None or condition not in env["configs"]:
        raise ConfigError(f"run.json has no scenario {scenario!r} under condition {condition!r}")
    spec = (meta.get("agent_specs") or {}).get(agent)
    if spec is None:
        raise ConfigError(f"run.json does not say how to load agent {agent!r}")
    is_reference = any(a["label"] == agent and a.get("is_reference") for a in config["agents"])
    return EpisodeJob(agent=agent, agent_spec=spec, scenario=scenario, env_id=env["env_id"],
                      config=env["configs"][condition], condition=condition, seed=int(seed),
                      budget_s=float(config.get("episode_budget_s") or 0.0), save_trajectory=save_trajectory,
                      reference=is_reference, max_neighbours=int(config.get("max_neighbours", MAX_NEIGHBOURS)),
                      sanitize_actions=bool(config.get("sanitize_actions", False)),
                      metric_modules=tuple(e["module"] for e in config.get("metric_modules", ())),
                      ability=str(env.get("ability", "")))

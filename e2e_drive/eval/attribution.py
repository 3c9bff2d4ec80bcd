"""Failure attribution and shield forks over a run directory: why did it crash, and was each trigger needed?

``e2e-drive attribute RUN_DIR`` re-simulates episodes of a finished run (same job, same seed: the
same episode) with snapshots (:mod:`e2e_drive.eval.forks`) and writes one line per episode to
``RUN_DIR/attribution.jsonl`` (appended as it goes: interrupt it and run it again to resume).

**Failure attribution** (every episode whose status is collision, offroad or route_deviation):
the snapshot ``before_s`` (default 3 s) before the failure is restored and driven on, until
``after_s`` (default 5 s) past the failure's time or the episode's end, by a chain of drivers in
which one more part is swapped for its privileged version each time:

1. ``agent``: the agent itself, restored with its state (a check: it must fail again, else the
   label is ``not_reproduced``);
2. ``perception``: the agent with its perception replaced by ground truth (the modular stack's
   perception swapped for the oracle perception, its planner and controller and their state kept);
3. ``decision``: as 2, with the expert's planner as well (fresh from the snapshot);
4. ``expert``: the privileged expert (ground truth, the expert's planner and controller).

For an agent behind a safety filter (:func:`e2e_drive.eval.forks.find_filter`) one more driver
runs: ``unshielded``, the agent itself with the filter bypassed.

A driver *fixes* the failure when its continuation has no collision, road departure or route
deviation. The label: ``shield`` when the agent without its filter avoids the failure (the
filter's override caused it), else the first part whose swap fixes it: ``perception`` (2 fixes), ``decision``
(3 fixes, 2 does not), ``control`` (only 4 fixes: with true perception and the expert's
decisions the agent's controller still fails, the expert's does not), or ``unavoidable`` (even the
expert fails from that moment). An agent without separable stages (the end-to-end network) has
no 2 and 3: the issue's "perception swap" for it, the expert's perception-free planner fed the same
scene, *is* the expert; a failure the expert avoids is labelled ``policy`` (perception, decision
and control cannot be told apart in one network), one it does not ``unavoidable``. A safety
filter in front of a modular stack stays in front in 2 and 3 (its own perception unchanged).

**Shield forks** (every episode of an agent with a safety filter, see the contract in
:mod:`e2e_drive.eval.forks`): every trigger onset is replayed with the filter bypassed for
``horizon_s`` (default 5 s): true alarm when a collision or road departure follows, else false
alarm; a collision or departure with no trigger in the ``missed_window_s`` before it is a missed
hazard.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from e2e_drive.errors import ConfigError
from e2e_drive.eval.forks import (
    DEFAULT_HORIZON_S,
    DEFAULT_MISSED_WINDOW_S,
    DrivenEpisode,
    continue_from,
    drive_with_snapshots,
    find_filter,
    fork_triggers,
)

__all__ = ["ATTRIBUTION_FILE", "FAILED_STATUSES", "LABELS", "attribute_episode", "attribute_run", "attribution_tables",
           "fill_false_alarms", "find_stack", "format_attribution", "load_attribution", "summarize_attribution"]

ATTRIBUTION_FILE = "attribution.jsonl"
#: Episode statuses that are attributed (a failure with a moment to fork before).
FAILED_STATUSES: tuple[str, ...] = ("collision", "offroad", "route_deviation")
#: Attribution labels, in the report's order.
LABELS: tuple[str, ...] = ("shield", "perception", "decision", "control", "policy", "unavoidable", "not_reproduced")
#: Seconds before the failure the swapped drivers start from, and after it they must stay clear.
DEFAULT_BEFORE_S = 3.0
DEFAULT_AFTER_S = 5.0
#: Status of the stored line -> the simulator's event of the same failure.
_EVENT_OF = {"collision": "crashed", "offroad": "offroad", "route_deviation": "route_deviation"}


# ---------------------------------------------------------------------------- swaps
def _chain(agent: Any) -> list[Any]:
    """The agent and the agents it wraps (``.agent``), outermost first."""
    out = []
    while agent is not None and len(out) < 8:
        out.append(agent)
        agent = getattr(agent, "agent", None)
    return out


def find_stack(agent: Any) -> Any:
    """The modular stack (perception, planner, controller) in ``agent`` or one it wraps; None if none."""
    for obj in _chain(agent):
        if all(hasattr(obj, n) for n in ("perception", "planner", "controller")) and hasattr(obj, "perceive"):
            return obj
    return None


def _swap_perception(agent: Any) -> Any:
    """``agent`` with its stack's perception replaced by the oracle (ground truth) perception."""
    from e2e_drive.agents.base import agent_needs
    from e2e_drive.agents.modular.oracle import OraclePerception

    stack = find_stack(agent)
    if stack is None:
        raise ConfigError("no modular stack to swap the perception of")
    params = {k: getattr(stack.perception, k) for k in ("range_m",) if hasattr(stack.perception, k)}
    stack.perception = OraclePerception(**params)
    stack.perception.reset(None)
    for obj in _chain(agent):
        obj.needs = dataclasses.replace(agent_needs(obj), reads_ground_truth=True)
        if hasattr(obj, "_shared"):  # a filter reading the stack's perception would read ground truth now
            obj._shared = False
        if obj is stack:
            break
    return agent


def _swap_decision(agent: Any, expert: Any) -> Any:
    """``agent`` with ground-truth perception and the expert's planner (fresh)."""
    agent = _swap_perception(agent)
    planner = copy.deepcopy(expert.planner)
    planner.reset()
    find_stack(agent).planner = planner
    return agent


# ---------------------------------------------------------------------------- one episode
def _row_event(row: Mapping[str, Any]) -> str | None:
    return _EVENT_OF.get(str(row.get("status")))


def attribute_episode(episode: DrivenEpisode, make_expert: Any, seed: int, has_stages: bool,
                      before_s: float = DEFAULT_BEFORE_S, after_s: float = DEFAULT_AFTER_S) -> dict[str, Any]:
    """The failure attribution of a failed ``episode`` (driven with ``keep_last`` covering ``before_s``).

    make_expert(): a fresh expert agent. has_stages: the agent has a modular stack (perception and
    decision can be swapped one at a time). Every driver of the chain is run; the label follows
    the module docstring's rule. Returns {"event", "step", "time_s", "fork_step", "fork_time_s",
    "swaps": {driver: event that ended its continuation, or None}, "label"}.
    """
    if not episode.failed:
        raise ValueError("attribute_episode: the episode did not fail")
    point = episode.point_before(before_s)
    seconds = (episode.steps - point.step) * episode.policy_dt_s + after_s
    swaps: dict[str, str | None] = {}
    failed: dict[str, bool] = {}

    def run(name: str, agent: Any = None, prepare: Any = None) -> None:
        cont = continue_from(point, agent, seconds=seconds, prepare=prepare, reset_seed=seed)
        swaps[name] = cont.event
        failed[name] = cont.failed

    run("agent")
    run("expert", make_expert())
    shielded = find_filter(_agent_of(point)) is not None
    if shielded:
        run("unshielded", prepare=_bypass)
    if has_stages:
        run("perception", prepare=_swap_perception)
        run("decision", prepare=lambda a: _swap_decision(a, make_expert()))
    if not failed["agent"]:
        label = "not_reproduced"
    elif failed["expert"]:
        label = "unavoidable"
    elif shielded and not failed["unshielded"]:
        label = "shield"
    elif not has_stages:
        label = "policy"
    elif not failed["perception"]:
        label = "perception"
    elif not failed["decision"]:
        label = "decision"
    else:
        label = "control"
    return {"event": episode.event, "step": episode.steps - 1, "time_s": episode.time_s, "fork_step": point.step,
            "fork_time_s": point.time_s, "swaps": swaps, "label": label}


def _agent_of(point: Any) -> Any:
    """The agent a point restores (a copy; the point itself is unchanged)."""
    from e2e_drive.sim.snapshot import restore

    return restore(point.snapshot).extra.get("agent")


def _bypass(agent: Any) -> Any:
    find_filter(agent).bypass = True
    return agent


# ---------------------------------------------------------------------------- a run
def load_attribution(run_dir: str | Path) -> list[dict[str, Any]]:
    """The lines of RUN_DIR/attribution.jsonl ([] when there is none; a truncated last line is dropped)."""
    path = Path(run_dir) / ATTRIBUTION_FILE
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            out.append(json.loads(text))
        except json.JSONDecodeError:
            if n == len(lines):
                break  # an interrupted write
            raise ConfigError(f"{path}: line {n} is not JSON") from None
    return out


def _key(row: Mapping[str, Any]) -> tuple[str, str, str, int]:
    return (str(row["agent"]), str(row["scenario"]), str(row["condition"]), int(row["seed"]))


def attribute_run(run_dir: str | Path, agents: Sequence[str] | None = None, before_s: float = DEFAULT_BEFORE_S,
                  after_s: float = DEFAULT_AFTER_S, horizon_s: float = DEFAULT_HORIZON_S,
                  missed_window_s: float = DEFAULT_MISSED_WINDOW_S, expert: str | None = None,
                  limit: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Attribute the failures and fork the shield triggers of a run; returns :func:`summarize_attribution`.

    agents: only these agents (default all but the reference). expert: the expert's agent spec
    (default the run's reference agent, else the built-in expert). limit: at most this many
    episodes re-simulated in this call (the rest on the next call).
    """
    from e2e_drive.eval.plan import job_for
    from e2e_drive.eval.runner import load_run

    for name, value in (("--before-s", before_s), ("--after-s", after_s), ("--horizon-s", horizon_s),
                        ("--missed-window-s", missed_window_s)):
        if not value > 0:
            raise ConfigError(f"{name} = {value!r}: expected a positive number of seconds")
    run_dir = Path(run_dir)
    meta, rows = load_run(run_dir)
    all_agents = sorted({r["agent"] for r in rows})
    reference = {a["label"] for a in meta["config"]["agents"] if a.get("is_reference")}
    wanted = list(agents) if agents else [a for a in all_agents if a not in reference]
    unknown = [a for a in wanted if a not in all_agents]
    if unknown:
        raise ConfigError(f"--agent {unknown[0]!r}: not an agent of this run; agents: {', '.join(all_agents)}")
    expert_spec = expert or next((meta.get("agent_specs", {}).get(a) for a in sorted(reference)), None) or "expert"
    from e2e_drive.agents.loading import load_agent

    load_agent(expert_spec)  # a bad spec fails here, before any episode

    shielded = {a: find_filter(load_agent(meta["agent_specs"][a])) is not None for a in wanted}
    todo = [r for r in rows if r["agent"] in wanted
            and (r["status"] in FAILED_STATUSES or shielded[r["agent"]])]
    done = {_key(r) for r in load_attribution(run_dir)}
    todo = [r for r in todo if _key(r) not in done]
    if limit is not None:
        todo = todo[:max(0, limit)]
    out_path = run_dir / ATTRIBUTION_FILE
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="episode", desc="attribute", dynamic_ncols=True, file=sys.stderr)
    envs: dict[str, Any] = {}
    try:
        for row in todo:
            job = job_for(meta, *_key(row))
            try:
                line = _attribute_row(row, job, envs, lambda: load_agent(expert_spec), before_s, after_s, horizon_s,
                                      missed_window_s, shielded[row["agent"]])
            except Exception as exc:  # an episode that cannot be re-simulated is kept as such; the rest go on
                why = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                line = {**dict(zip(("agent", "scenario", "condition", "seed"), _key(row))), "status": row["status"],
                        "ability": row.get("ability", ""), "failure": None, "shield": None, "error": why}
                envs.pop(json.dumps([job.env_id, job.config], sort_keys=True), None)
                if bar is not None:
                    bar.write(f"attribute: {row['agent']} {row['scenario']} seed {row['seed']}: {why}")
            with open(out_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, allow_nan=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        for env in envs.values():
            env.close()
    return summarize_attribution(load_attribution(run_dir))


def _attribute_row(row: Mapping[str, Any], job: Any, envs: dict[str, Any], make_expert: Any, before_s: float,
                   after_s: float, horizon_s: float, missed_window_s: float, shielded: bool) -> dict[str, Any]:
    import gymnasium as gym

    import e2e_drive  # noqa: F401  (registers the ids)
    from e2e_drive.agents.loading import load_agent

    t0 = time.perf_counter()
    key = json.dumps([job.env_id, job.config], sort_keys=True)
    if key not in envs:
        envs[key] = gym.make(job.env_id, config=copy.deepcopy(job.config), disable_env_checker=True)
    env = envs[key].unwrapped
    agent = load_agent(job.agent_spec)
    failed = row["status"] in FAILED_STATUSES
    keep = int(round(before_s * float(env.config["policy_frequency_hz"]))) + 1 if failed else 0
    episode = drive_with_snapshots(env, agent, job.seed, keep_last=keep, fork_triggers=shielded)
    line: dict[str, Any] = {"agent": row["agent"], "scenario": row["scenario"], "condition": row["condition"],
                            "seed": int(row["seed"]), "ability": row.get("ability", ""), "status": row["status"],
                            "rerun_event": episode.event, "reproduced": episode.event == _row_event(row)
                            if failed else not episode.failed}
    line["failure"] = None
    if failed:
        if episode.failed:
            line["failure"] = attribute_episode(episode, make_expert, job.seed, find_stack(agent) is not None,
                                                before_s, after_s)
        else:
            line["failure"] = {"event": None, "label": "not_reproduced", "swaps": {}}
    line["shield"] = fork_triggers(episode, horizon_s, missed_window_s) if shielded else None
    line["wall_s"] = time.perf_counter() - t0
    return line


def fill_false_alarms(run_dir: str | Path, rows: Sequence[dict[str, Any]]) -> int:
    """Fill the episode lines' ``shield_false_alarms`` (in place) from RUN_DIR/attribution.jsonl: the
    triggers of the episode whose counterfactual fork found no collision or departure. Lines of episodes
    not forked keep None. Returns how many lines were filled."""
    forks = {_key(line): line["shield"] for line in load_attribution(run_dir) if line.get("shield")}
    filled = 0
    for row in rows:
        if "shield_false_alarms" not in row:
            continue
        shield = forks.get(_key(row))
        if shield is not None:
            row["shield_false_alarms"] = int(shield["n_false_alarms"])
            filled += 1
    return filled


# ---------------------------------------------------------------------------- summary
def summarize_attribution(lines: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per agent: failures by label (overall and per ability), two example episodes per label, and
    the shield's triggers, false alarms (count and rate) and missed hazards."""
    agents: dict[str, Any] = {}
    for line in lines:
        a = agents.setdefault(line["agent"], {"failures": 0, "labels": Counter(), "by_ability": defaultdict(Counter),
                                              "examples": defaultdict(list), "shield": None})
        failure = line.get("failure")
        if failure:
            label = failure["label"]
            a["failures"] += 1
            a["labels"][label] += 1
            a["by_ability"][line.get("ability") or line["scenario"]][label] += 1
            if len(a["examples"][label]) < 2:
                a["examples"][label].append({"scenario": line["scenario"], "condition": line["condition"],
                                             "seed": line["seed"], "event": failure.get("event"),
                                             "time_s": failure.get("time_s"), "fork_time_s": failure.get("fork_time_s")})
        shield = line.get("shield")
        if shield is not None:
            s = a["shield"] = a["shield"] or {"episodes": 0, "triggers": 0, "true_alarms": 0, "false_alarms": 0,
                                              "missed_hazards": 0, "hazards": 0, "by_rule": {}}
            s["episodes"] += 1
            for t in shield.get("triggers", ()):
                r = s["by_rule"].setdefault(str(t.get("rule", "")), {"triggers": 0, "false_alarms": 0})
                r["triggers"] += 1
                r["false_alarms"] += t.get("label") == "false_alarm"
            s["triggers"] += shield["n_triggers"]
            s["true_alarms"] += shield["n_true_alarms"]
            s["false_alarms"] += shield["n_false_alarms"]
            s["missed_hazards"] += bool(shield["missed_hazard"])
            s["hazards"] += line.get("rerun_event") in ("crashed", "offroad")
    out: dict[str, Any] = {}
    for name, a in sorted(agents.items()):
        shield = a["shield"]
        if shield is not None:
            shield["false_alarm_rate"] = shield["false_alarms"] / shield["triggers"] if shield["triggers"] else None
        out[name] = {"failures": a["failures"], "labels": {k: a["labels"][k] for k in LABELS if a["labels"][k]},
                     "by_ability": {ab: {k: c[k] for k in LABELS if c[k]} for ab, c in sorted(a["by_ability"].items())},
                     "examples": {k: a["examples"][k] for k in LABELS if a["examples"][k]}, "shield": shield}
    return out


def format_attribution(summary: Mapping[str, Any]) -> str:
    """The attribution summary as plain-text tables (the CLI prints it)."""
    if not summary:
        return "no attributed episodes"
    head = f"{'agent':<18} {'failures':>8} " + " ".join(f"{k:>14}" for k in LABELS)
    lines = ["failure attribution (first part whose privileged swap avoids the failure)", head]
    for agent, s in summary.items():
        lines.append(f"{agent:<18} {s['failures']:>8} " + " ".join(f"{s['labels'].get(k, 0):>14}" for k in LABELS))
    shields = {a: s["shield"] for a, s in summary.items() if s["shield"]}
    if shields:
        lines += ["", "shield triggers (counterfactual forks without the override)",
                  f"{'agent':<18} {'episodes':>8} {'triggers':>8} {'true':>6} {'false':>6} {'false rate':>10} "
                  f"{'missed hazards':>14}"]
        for agent, s in shields.items():
            rate = "-" if s["false_alarm_rate"] is None else f"{s['false_alarm_rate']:.0%}"
            lines.append(f"{agent:<18} {s['episodes']:>8} {s['triggers']:>8} {s['true_alarms']:>6} "
                         f"{s['false_alarms']:>6} {rate:>10} {s['missed_hazards']:>14}")
        lines += ["", "per rule", f"{'agent':<18} {'rule':<18} {'triggers':>8} {'false':>6} {'false rate':>10}"]
        lines += [f"{agent:<18} {rule:<18} {n:>8} {k:>6} {rate:>10}" for agent, rule, n, k, rate in _rule_rows(shields)]
    return "\n".join(lines)


def _rule_rows(shields: Mapping[str, Any]) -> list[tuple[str, str, int, int, str]]:
    """(agent, rule, triggers, false alarms, false-alarm rate) of every rule that triggered."""
    return [(agent, rule, c["triggers"], c["false_alarms"],
             f"{c['false_alarms'] / c['triggers']:.0%}" if c["triggers"] else "-")
            for agent, s in shields.items() for rule, c in sorted((s.get("by_rule") or {}).items())]


#: What the report says above the attribution tables.
REPORT_NOTE = ("Each failed episode (collision, off-road, route deviation) re-simulated from a snapshot a few seconds "
               "before the failure, with the agent's perception, then also its decision (planner), swapped for the "
               "privileged expert's, and then the whole expert driving: the label is the first swap that avoids the "
               "failure (control: only the expert's controller did); shield: the agent with its safety filter "
               "bypassed avoids it (the override caused it); unavoidable: the expert fails from there too; "
               "policy: an agent without separate stages (the end-to-end network) whose failure the expert avoids. "
               "Shield triggers are replayed without the override: a collision or departure that follows makes a "
               "true alarm. Made by e2e-drive report --attribute (RUN_DIR/attribution.jsonl).")


def attribution_tables(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(caption, header, rows) of the report's attribution tables: the split per agent, per agent and
    ability, the examples, and the shield's triggers."""
    tables: list[tuple[str, list[str], list[list[Any]]]] = []
    used = [k for k in LABELS if any(s["labels"].get(k) for s in summary.values())]
    if used:
        tables.append(("Failures by cause (count and share of the agent's attributed failures)",
                       ["agent", "failures", *used],
                       [[a, s["failures"], *(f"{s['labels'].get(k, 0)} ({s['labels'].get(k, 0) / s['failures']:.0%})"
                                            if s["failures"] else "0" for k in used)]
                        for a, s in summary.items() if s["failures"]]))
        tables.append(("Failures by cause, per ability", ["agent", "ability", *used],
                       [[a, ab, *(c.get(k, 0) for k in used)] for a, s in summary.items()
                        for ab, c in s["by_ability"].items()]))
        tables.append(("Examples (two per agent and cause)", ["agent", "cause", "scenario", "condition", "seed",
                                                              "failure", "at [s]", "forked at [s]"],
                       [[a, k, e["scenario"], e["condition"], e["seed"], e["event"], _fmt_s(e["time_s"]),
                         _fmt_s(e["fork_time_s"])] for a, s in summary.items()
                        for k, exs in s["examples"].items() for e in exs]))
    shields = [(a, s["shield"]) for a, s in summary.items() if s["shield"]]
    if shields:
        tables.append(("Safety filter triggers, replayed without the override (counterfactual forks)",
                       ["agent", "episodes", "triggers", "true alarms", "false alarms", "false-alarm rate",
                        "hazards (collision / off-road)", "missed hazards"],
                       [[a, s["episodes"], s["triggers"], s["true_alarms"], s["false_alarms"],
                         "-" if s["false_alarm_rate"] is None else f"{s['false_alarm_rate']:.0%}", s["hazards"],
                         s["missed_hazards"]] for a, s in shields]))
        per_rule = _rule_rows(dict(shields))
        if per_rule:
            tables.append(("Safety filter triggers per rule (a false-alarm rate means little without its count of "
                           "triggers)", ["agent", "rule", "triggers", "false alarms", "false-alarm rate"],
                           [list(r) for r in per_rule]))
    return tables


def _fmt_s(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


# ---------------------------------------------------------------------------- command line
def add_attribute(sub: Any) -> Any:
    """Add the ``attribute`` subcommand to an argparse subparsers object; returns its parser."""
    p = sub.add_parser(
        "attribute", help="why each failure happened (perception / decision / control / unavoidable) and whether "
                          "each safety-filter trigger was needed (counterfactual forks)",
        description="Re-simulate a run's failed episodes from a snapshot BEFORE_S seconds before the failure with the "
                    "perception, then the decision, then the whole driver swapped for privileged versions, and label "
                    "each failure by the first swap that avoids it; fork every safety-filter trigger without the "
                    "override (true / false alarm) and count failures with no trigger (missed hazards). Writes "
                    "RUN_DIR/attribution.jsonl (resumable) and prints the split; e2e-drive report shows it.")
    p.add_argument("dir", help="run directory made by e2e-drive evaluate or benchmark")
    p.add_argument("--agent", action="append", default=None, metavar="NAME",
                   help="only this agent (repeat for several; default: every agent but the reference)")
    p.add_argument("--expert", default=None, metavar="SPEC",
                   help="the privileged expert (default: the run's reference agent, else the built-in expert)")
    p.add_argument("--before-s", type=float, default=DEFAULT_BEFORE_S,
                   help=f"fork this long before a failure [s] (default {DEFAULT_BEFORE_S:g})")
    p.add_argument("--after-s", type=float, default=DEFAULT_AFTER_S,
                   help=f"a swap avoids the failure if it drives clear until this long after it [s] "
                        f"(default {DEFAULT_AFTER_S:g})")
    p.add_argument("--horizon-s", type=float, default=DEFAULT_HORIZON_S,
                   help=f"replay each trigger without the override this long [s] (default {DEFAULT_HORIZON_S:g})")
    p.add_argument("--missed-window-s", type=float, default=DEFAULT_MISSED_WINDOW_S,
                   help="a failure with no trigger this long before it is a missed hazard [s] "
                        f"(default {DEFAULT_MISSED_WINDOW_S:g})")
    p.add_argument("--limit", type=int, default=None, help="re-simulate at most this many episodes now")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_attribute)
    return p


def _cmd_attribute(args: Any) -> int:
    if not (Path(args.dir) / "run.json").is_file():
        raise ConfigError(f"{args.dir}: not a run directory (no run.json)")
    summary = attribute_run(args.dir, agents=args.agent, before_s=args.before_s, after_s=args.after_s,
                            horizon_s=args.horizon_s, missed_window_s=args.missed_window_s, expert=args.expert,
                            limit=args.limit, progress=not args.no_progress)
    print(format_attribution(summary))
    print(f"attribution: {(Path(args.dir) / ATTRIBUTION_FILE).resolve()}")
    return 0

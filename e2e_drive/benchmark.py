"""The main job: the ability suite, CARLA-style tables with intervals, ability scores, and the README results.

``e2e-drive benchmark`` runs suite v2, the ability suite: every scenario file in ``envs/abilities/``
(short scripted scenarios, each measuring one ability: emergency braking, overtaking, merging,
giving way, route following, lane keeping) with the end-to-end agent (shipped checkpoint), the
modular stack (camera), each behind the rule-based safety filter (the "learning plus rules"
hybrids), the privileged expert (reference line) and the blind baseline (camera lane keeping at
constant speed, no notion of other vehicles), under training conditions and two new ones (new
traffic, new visuals), on 30 paired seeds. It prints the comparison table, the two tables of the
CARLA paper (Dosovitskiy et al., 2017; Table 1 success rates, Table 2 km driven between
infractions) and the ability scores (Table 3), all with confidence intervals, writes the HTML
report, and says where and how long it took.

Every result names its suite version (:data:`SUITE_VERSION` for the ability suite); numbers from
different suite versions are never compared. The two-scenario suite of v1 (highway and racetrack)
stays available as ``--suite classic``.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from e2e_drive.errors import ConfigError
from e2e_drive.provenance import REPO_ROOT  # scenario and agent files live in envs/ and agents/ there

#: First seed of the benchmark: far from every range used to collect training data (e2e: 0..59),
#: to tune the stacks (1000+) or to check the expert (5000..6049), so every agent meets held-out traffic.
DEFAULT_SEED = 20000

#: Fewer paired seeds than this never yield a "better" or "worse" finding.
MIN_PAIRS = 5

#: Infraction kinds in Table 2, as the CARLA paper picks its own; each row is headed by the label of
#: the count declared with that ``infraction`` (e2e_drive.eval.metric_defs).
TABLE2_INFRACTIONS: tuple[str, ...] = ("at_fault_collision", "collision", "offroad")

#: The version of the default suite (the ability suite); results and the README name it.
SUITE_VERSION = "suite v2"
#: Where the ability suite's scenario files are: every *.toml there, found when the benchmark runs.
ABILITY_DIR = "envs/abilities"

README_START = "<!-- benchmark-results:start -->"
README_END = "<!-- benchmark-results:end -->"


@dataclass(frozen=True)
class Suite:
    """What a benchmark runs: scenario files, agents, conditions and how many paired seeds.

    envs: scenario files; env_dir: a folder whose *.toml files are the scenarios, listed when the
    benchmark runs (the ability suite). version: the suite version its results carry.
    """

    envs: tuple[str, ...]
    agents: tuple[str, ...]
    conditions: tuple[str, ...]
    episodes: int
    #: Condition label in the tables, per condition name.
    labels: Mapping[str, str] = field(default_factory=dict)
    env_dir: str | None = None
    version: str = SUITE_VERSION
    description: str = ""


AGENTS = ("agents/e2e.toml", "agents/e2e_safety.toml", "agents/modular.toml", "agents/modular_safety.toml",
          "agents/expert.toml")
#: The agents of the ability suite: the v1 agents and the blind baseline.
ABILITY_AGENTS = AGENTS + ("agents/blind.toml",)
LABELS = {"train": "training conditions", "dense_traffic": "new traffic", "night_noise": "new visuals",
          "noise": "new visuals (noise)", "night": "new visuals (night)", "blur": "new visuals (blur)",
          "occlusion": "new visuals (occlusion)", "latency": "new sensor (latency)",
          "camera_pitch": "new sensor (pitch)", "camera_height": "new sensor (height)"}

#: Suite name -> suite (a registry; ``--suite NAME`` picks one, ``--full`` is ``--suite full``).
SUITES: dict[str, Suite] = {
    "default": Suite(envs=(), env_dir=ABILITY_DIR, agents=ABILITY_AGENTS,
                     conditions=("train", "dense_traffic", "night_noise"), episodes=30, labels=LABELS,
                     version=SUITE_VERSION, description="the ability suite: every scenario of envs/abilities/"),
    "full": Suite(envs=(), env_dir=ABILITY_DIR, agents=ABILITY_AGENTS,
                  conditions=("train", "dense_traffic", "night", "noise", "blur", "occlusion", "latency",
                              "camera_pitch"), episodes=100, labels=LABELS, version=SUITE_VERSION,
                  description="the ability suite under every condition, 100 seeds (for a cluster)"),
    "classic": Suite(envs=("envs/highway.toml", "envs/racetrack.toml"), agents=AGENTS,
                     conditions=("train", "dense_traffic", "night_noise"), episodes=20, labels=LABELS,
                     version="suite v1", description="the two-scenario suite of v1: highway and racetrack"),
}


def _resolve(paths: Sequence[str], what: str = "file") -> list[str]:
    out = []
    for p in paths:
        path = Path(p) if Path(p).is_absolute() else REPO_ROOT / p
        if not path.is_file():
            raise ConfigError(f"{path}: no such {what} (the benchmark runs from a clone: pip install -e .)")
        out.append(str(path))
    return out


def suite_envs(spec: Suite) -> list[str]:
    """The suite's scenario files: its ``envs``, then every *.toml of its ``env_dir`` (by name), resolved now."""
    envs = _resolve(spec.envs, "scenario file")
    if spec.env_dir is not None:
        folder = Path(spec.env_dir) if Path(spec.env_dir).is_absolute() else REPO_ROOT / spec.env_dir
        found = sorted(folder.glob("*.toml")) if folder.is_dir() else []
        if not found:
            raise ConfigError(f"{folder}: {spec.version} runs every scenario file (*.toml) in this folder, and it "
                              f"{'has none' if folder.is_dir() else 'does not exist'} (the benchmark runs from a "
                              f"clone: pip install -e .)")
        envs += [str(p) for p in found]
    return envs


def _label(agent_path: str) -> str:
    return Path(agent_path).stem


# ---------------------------------------------------------------------------------------- tables
def _fmt_rate(k: int, n: int, errors: int = 0) -> str:
    """Success % with its Wilson interval, and the episodes that were not driven (errors), if any."""
    from e2e_drive.eval.stats import wilson_interval

    if n == 0:
        return "-"
    low, high = wilson_interval(k, n)
    return f"{100 * k / n:.0f} [{100 * low:.0f}, {100 * high:.0f}]" + (f" ({errors} err)" if errors else "")


def _fmt_km(entry: Mapping[str, Any]) -> str:
    def km(v: float | None) -> str:  # two significant digits below 1 km, so 0.004 does not print as 0.0
        if v is None:
            return "inf"
        return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 or v == 0 else f"{v:.2g}"

    if entry.get("count", 0) == 0:
        return f">{km(entry.get('low'))} (0)"
    return f"{km(entry['km_between'])} [{km(entry['low'])}, {km(entry['high'])}] ({entry['count']})"


def carla_tables(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> dict[str, Any]:
    """The CARLA paper's Table 1 (success %) and Table 2 (km between infractions), with intervals.

    Table 1: one row per (scenario, condition), one column per agent: success rate with its Wilson
    95 % interval, and "(k err)" when k episodes were not driven (error statuses, counted as
    failures). Table 2: one row per (condition, infraction kind), pooled over scenarios as in
    the paper: km driven per infraction with its exact Poisson 95 % interval and the count.
    """
    from e2e_drive.eval.metric_defs import all_metrics
    from e2e_drive.eval.metrics import ERROR_STATUSES
    from e2e_drive.eval.scores import distance_between_infractions

    agents = sorted({r["agent"] for r in rows}, key=lambda a: (a == "expert", a))
    cells: dict[tuple, list] = defaultdict(list)
    for r in rows:
        cells[(r["scenario"], r["condition"], r["agent"])].append(r)
    order = sorted({(r["scenario"], r["condition"]) for r in rows},
                   key=lambda sc: (sc[0], list(labels).index(sc[1]) if sc[1] in labels else 99))
    t1_rows = []
    for scenario, condition in order:
        line = [scenario, labels.get(condition, condition)]
        for agent in agents:
            members = cells[(scenario, condition, agent)]
            line.append(_fmt_rate(sum(m["status"] == "success" for m in members), len(members),
                                  sum(m["status"] in ERROR_STATUSES for m in members)))
        t1_rows.append(line)
    counts = {m.infraction: m for m in all_metrics() if m.infraction is not None}
    kinds = {counts[kind].label or kind: counts[kind].name for kind in TABLE2_INFRACTIONS}
    conditions = [c for c in labels if any(r["condition"] == c for r in rows)]
    conditions += sorted({r["condition"] for r in rows} - set(conditions))
    t2_rows = []
    for condition in conditions:
        per_agent = {a: distance_between_infractions([r for r in rows if r["agent"] == a
                                                      and r["condition"] == condition], kinds=kinds)
                     for a in agents}
        for kind in kinds:
            t2_rows.append([labels.get(condition, condition), kind]
                           + [_fmt_km(per_agent[a][kind]) for a in agents])
    return {"agents": agents,
            "table1": {"head": ["scenario", "condition", *agents], "rows": t1_rows},
            "table2": {"head": ["condition", "infraction", *agents], "rows": t2_rows}}


def ability_table(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> dict[str, Any]:
    """Table 3: ability scores. One row per (ability, condition), and per ability pooled over the conditions
    when there are several; one column per agent: success over every episode of the ability's scenarios, with
    its Wilson 95 % interval and "(k err)" for episodes with an error status. Empty without abilities."""
    from e2e_drive.eval.summary import ability_scores

    entries = ability_scores(rows)
    if not entries:
        return {"head": [], "rows": []}
    agents = sorted({r["agent"] for r in rows}, key=lambda a: (a == "expert", a))
    by = {(e["ability"], e["condition"], e["agent"]): e for e in entries}
    conditions = [c for c in labels if any(e["condition"] == c for e in entries)]
    conditions += sorted({e["condition"] for e in entries} - set(conditions) - {"*"})
    if any(e["condition"] == "*" for e in entries):
        conditions.append("*")
    abilities = list(dict.fromkeys(e["ability"] for e in entries))
    out = []
    for ability in abilities:
        for condition in conditions:
            if not any((ability, condition, a) in by for a in agents):
                continue
            line = [ability, "pooled over conditions" if condition == "*" else labels.get(condition, condition)]
            for agent in agents:
                e = by.get((ability, condition, agent))
                line.append("-" if e is None else _fmt_rate(e["k"], e["n"], e["n_errors"]))
            out.append(line)
    return {"head": ["ability", "condition", *agents], "rows": out}


def _fixed(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, rows)])


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *("| " + " | ".join(str(x) for x in r) + " |" for r in rows)])


# ---------------------------------------------------------------------------------------- findings
def findings(rows: Sequence[Mapping[str, Any]], agent: str = "e2e", baseline: str = "modular",
             labels: Mapping[str, str] | None = None, pooled_only: bool = False) -> list[str]:
    """Plain sentences, computed from paired differences, on where ``agent`` beats ``baseline``,
    where it loses and where the data cannot tell (an interval containing zero is never a win)."""
    from e2e_drive.eval.summary import compare

    labels = labels or {}
    present = {r["agent"] for r in rows}
    if agent not in present or baseline not in present:
        return [f"(no comparison: agents {agent!r} and {baseline!r} are not both in this run)"]
    sub = [r for r in rows if r["agent"] in (agent, baseline)]
    comp = compare(sub, baseline=baseline, metrics=("success", "driving_score"))
    out = []
    pooled = any(c["scenario"] == "*" for c in comp["comparisons"])  # absent when the run has only one cell
    for c in comp["comparisons"]:
        if pooled_only and pooled and c["scenario"] != "*":
            continue
        where = "pooled over all scenarios and conditions" if c["scenario"] == "*" else \
            f"{c['scenario']}, {labels.get(c['condition'], c['condition'])}"
        parts = []
        for metric, m in c["metrics"].items():
            diff, low, high = m.get("difference"), m.get("low"), m.get("high")
            if diff is None or low is None or high is None:
                continue
            scale, unit = (100.0, " points") if metric == "success" else (1.0, "")
            name = "success rate" if metric == "success" else "driving score"
            p = m.get("p_value")
            # A difference counts only when the paired interval excludes zero AND the paired test agrees;
            # with a handful of pairs the bootstrap interval is degenerate, so say so instead.
            if c["n_pairs"] < MIN_PAIRS:
                word = f"too few paired seeds to tell (< {MIN_PAIRS})"
            else:
                word = m["verdict"]
            p_text = f", {m['test'].split('_')[0]} p = {p:.3g}" if p is not None and m.get("test") else ""
            parts.append(f"{name} {word} ({diff * scale:+.2f}{unit}, 95% CI [{low * scale:+.2f}, "
                         f"{high * scale:+.2f}]{p_text}, {c['n_pairs']} paired seeds)")
        if parts:
            out.append(f"{agent} vs {baseline}, {where}: " + "; ".join(parts) + ".")
    return out


def ability_findings(rows: Sequence[Mapping[str, Any]], agent: str = "e2e", baseline: str = "modular") -> list[str]:
    """Plain sentences on ``agent`` against ``baseline`` per ability: paired success over the ability's
    scenarios and conditions, called better or worse only when the interval excludes zero and McNemar's
    p < 0.05 (and with at least MIN_PAIRS pairs)."""
    from e2e_drive.eval.summary import compare_abilities

    present = {r["agent"] for r in rows}
    if agent not in present or baseline not in present:
        return []
    out = []
    for c in compare_abilities([r for r in rows if r["agent"] in (agent, baseline)], baseline):
        m = c["success"]
        if m.get("difference") is None or m.get("low") is None or m.get("high") is None:
            continue
        word = f"too few paired seeds to tell (< {MIN_PAIRS})" if c["n_pairs"] < MIN_PAIRS else m["verdict"]
        p = m.get("p_value")
        p_text = f", McNemar p = {p:.3g}" if p is not None else ""
        out.append(f"{agent} vs {baseline}, ability {c['ability']} ({', '.join(c['scenarios'])}): success rate "
                   f"{word} ({100 * m['difference']:+.2f} points, 95% CI [{100 * m['low']:+.2f}, "
                   f"{100 * m['high']:+.2f}]{p_text}, {c['n_pairs']} paired seeds).")
    return out


#: The shielded agents of the suite and the drivers they wrap (what the shield buys each, at what cost).
SHIELDED = (("e2e_safety", "e2e"), ("modular_safety", "modular"))


def shield_findings(rows: Sequence[Mapping[str, Any]], shielded: str = "e2e_safety", bare: str = "e2e") -> list[str]:
    """Plain sentences on what the safety shield buys ``bare`` (``shielded`` is the same driver behind it) and at
    what cost, from paired per-seed differences pooled over the run: at-fault collision and off-road rates
    (McNemar), the driving score (Wilcoxon), each with its 95 % paired bootstrap interval, called a change only
    when the interval excludes zero and the test agrees; and the shield's false alarms (triggers whose
    counterfactual fork found no collision or departure) where ``e2e-drive attribute`` filled the lines'
    ``shield_false_alarms``."""
    from e2e_drive.eval.summary import compare, shield_fork_counts

    present = {r["agent"] for r in rows}
    if shielded not in present or bare not in present:
        return []
    comp = compare([r for r in rows if r["agent"] in (shielded, bare)], baseline=bare,
                   metrics=("at_fault", "offroad", "driving_score"))
    cells = comp["comparisons"]
    c = next((x for x in cells if x["scenario"] == "*"), cells[0] if len(cells) == 1 else None)
    if c is None:
        return []
    where = "pooled over all scenarios and conditions" if c["scenario"] == "*" else \
        f"{c['scenario']}, {c['condition']}"
    few = c["n_pairs"] < MIN_PAIRS

    def part(metric: str, name: str) -> str | None:
        m = c["metrics"][metric]
        if m.get("difference") is None or m.get("low") is None or m.get("high") is None:
            return None
        rate = metric != "driving_score"
        scale, unit = (100.0, " points") if rate else (1.0, "")
        word = f"too few paired seeds to tell (< {MIN_PAIRS})" if few else m["verdict"]
        level = (f"{100 * m['baseline']:.1f}% -> {100 * m['agent']:.1f}%" if rate
                 else f"{m['baseline']:.3f} -> {m['agent']:.3f}")
        p = m.get("p_value")
        p_text = f", {m['test'].split('_')[0]} p = {p:.3g}" if p is not None and m.get("test") else ""
        return (f"{name} {level}, {word} ({m['difference'] * scale:+.2f}{unit}, 95% CI [{m['low'] * scale:+.2f}, "
                f"{m['high'] * scale:+.2f}]{p_text})")

    buys = [t for t in (part("at_fault", "at-fault collisions"), part("offroad", "off-road")) if t]
    cost = part("driving_score", "driving score")
    forks = shield_fork_counts([r for r in rows if r["agent"] == shielded])
    if forks:
        n, k = forks["triggers"], forks["false_alarms"]
        alarms = (f"false alarms {k} of {n} triggers ({k / n:.0%}" if n else "false alarms 0 of 0 triggers (-") + \
            f", counterfactual forks of {forks['episodes']} episodes)"
    else:
        n = sum(int(r.get("shield_triggers") or 0) for r in rows if r["agent"] == shielded)
        alarms = f"{n} triggers, false-alarm rate not measured (e2e-drive attribute RUN_DIR forks each trigger)"
    return [f"What the shield buys {bare} ({shielded} vs {bare}, {where}, {c['n_pairs']} paired seeds): "
            + ("; ".join(buys) or "nothing measurable") + f". At what cost: {cost or 'driving score not measured'}; "
            + alarms + "."]


def all_findings(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str],
                 submitted: Sequence[str] = ()) -> list[str]:
    """The benchmark's findings: the ranking, each of the user's agents (``submitted``) against every
    baseline (pooled and per ability), e2e against the modular stack (per cell, or per ability and pooled
    when the run has abilities), each stack behind its safety filter against itself (and what the shield buys
    it, at what cost: :func:`shield_findings`), and, with the blind
    baseline, every agent against it per ability (an ability the blind baseline passes as well tests nothing)."""
    from e2e_drive.eval.ranking import ranking_sentences

    has_abilities = any(r.get("ability") for r in rows)
    out = ranking_sentences(rows)
    present = {r["agent"] for r in rows}
    for mine in submitted:
        for base in sorted(present - set(submitted), key=lambda a: (a == "expert", a)):
            out += findings(rows, mine, base, labels=labels, pooled_only=True)
            if has_abilities:
                out += ability_findings(rows, mine, base)
    out += findings(rows, labels=labels, pooled_only=has_abilities)
    if has_abilities:
        out += ability_findings(rows)
    for shielded, bare in SHIELDED:
        out += findings(rows, shielded, bare, labels=labels, pooled_only=True)
        out += shield_findings(rows, shielded, bare)
    if has_abilities and any(r["agent"] == "blind" for r in rows):
        for agent in sorted({r["agent"] for r in rows} - {"blind"}, key=lambda a: (a == "expert", a)):
            out += ability_findings(rows, agent, "blind")
    return list(dict.fromkeys(out))  # a user's agent against the blind baseline comes once


# ---------------------------------------------------------------------------------------- figure
def text_figure(rows: Sequence[Mapping[str, Any]], labels: Mapping[str, str], width: int = 40) -> str:
    """Success rate per agent and condition (pooled over scenarios) as a text bar chart with the
    Wilson interval drawn as [ ] around the bar, so it renders anywhere (terminal, README)."""
    from e2e_drive.eval.stats import wilson_interval

    agents = sorted({r["agent"] for r in rows}, key=lambda a: (a == "expert", a))
    conditions = [c for c in labels if any(r["condition"] == c for r in rows)]
    conditions += sorted({r["condition"] for r in rows} - set(conditions))
    name_w = max(len(a) for a in agents)
    lines = ["success rate, pooled over scenarios (bar = rate, [ ] = 95% Wilson interval, 0..100%)"]
    for condition in conditions:
        lines.append(f"{labels.get(condition, condition)}:")
        for a in agents:
            members = [r for r in rows if r["agent"] == a and r["condition"] == condition]
            if not members:
                continue
            k, n = sum(r["status"] == "success" for r in members), len(members)
            low, high = wilson_interval(k, n)
            bar = [" "] * (width + 1)
            for i in range(int(round(k / n * width))):
                bar[i] = "#"
            bar[int(round(low * width))] = "["
            bar[int(round(high * width))] = "]"
            lines.append(f"  {a.ljust(name_w)} |{''.join(bar)}| {100 * k / n:5.1f}% ({k}/{n})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- your agents
def select(paths: Sequence[str], names: Sequence[str] | None, flag: str) -> list[str]:
    """The files among ``paths`` whose stem is in ``names`` (all of them for None); an unknown name is an error."""
    if not names:
        return list(paths)
    stems = {Path(p).stem: p for p in paths}
    unknown = [n for n in names if n not in stems]
    if unknown:
        raise ConfigError(f"{flag} {unknown[0]!r}: not in this suite; choose from {', '.join(stems)}")
    return [stems[n] for n in dict.fromkeys(names)]


def _select_conditions(spec: Suite, names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(spec.conditions)
    unknown = [n for n in names if n not in spec.conditions]
    if unknown:
        raise ConfigError(f"--conditions {unknown[0]!r}: not a condition of this suite; choose from "
                          f"{', '.join(spec.conditions)}")
    return [c for c in spec.conditions if c in names]


def with_user_agents(shipped: Sequence[str], agents: Sequence[str]) -> tuple[list[str], list[str]]:
    """(every agent spec to run, the labels of the user's): the shipped agents first, then the user's, whose
    labels (file stem or class name) must differ from the shipped ones' and from each other."""
    from e2e_drive.eval.plan import _agent_label

    taken = {_agent_label(a): a for a in shipped}
    out, submitted = list(shipped), []
    for spec in agents:
        spec = str(spec)
        label = _agent_label(spec)
        if label in taken:
            raise ConfigError(f"--agent {spec}: its name '{label}' is taken by {Path(taken[label]).name if ':' not in taken[label] else taken[label]}; "
                              f"rename the file or the class")
        taken[label] = spec
        out.append(spec)
        submitted.append(label)
    return out, submitted


def reuse_earlier(out: str, envs: Sequence[str], agents: Sequence[str], episodes: int, seed: int,
                  conditions: Sequence[str], difficulties: str | Sequence[str] | None) -> dict[str, Any]:
    """Bring an earlier run in ``out`` to this run's configuration, keeping the episodes of unchanged agents
    (:func:`e2e_drive.eval.reuse.prepare_reuse`); say what was kept and what will be re-run."""
    from e2e_drive.eval.plan import plan_run
    from e2e_drive.eval.reuse import prepare_reuse, run_fingerprints

    plan = plan_run(envs, agents, episodes, seed, list(conditions), difficulties=difficulties)
    result = prepare_reuse(out, plan.config, plan.agent_specs, run_fingerprints(plan.agent_specs))
    if result["kept"] or result["superseded"]:
        print(f"{out}: reusing {result['kept']} episodes of an earlier run (unchanged agents, same seeds)")
    for label, (count, why) in result["superseded"].items():
        print(f"{out}: {count} episodes of '{label}' set aside in superseded.jsonl ({why})")
    return result


def ranking_tables_of(rows: Sequence[Mapping[str, Any]], submitted: Sequence[str]) -> dict[str, Any]:
    """Tables 4 and 5: the ranking by the driving score and the ability scores with rank ranges."""
    from e2e_drive.eval.ranking import ranking_tables

    t = ranking_tables(rows, marked=submitted)
    return {"ranking": t["overall"], "ranking_abilities": t["abilities"]}


# ---------------------------------------------------------------------------------------- run
def run_benchmark(suite: str = "default", episodes: int | None = None, seed: int = DEFAULT_SEED, out: str | None = None,
                  workers: int | None = None, backend: str = "process", address: str | None = None,
                  report: bool = True, readme: str | None = None, command: str = "e2e-drive benchmark",
                  memory_limit_gb: float | None = None, difficulties: str | Sequence[str] | None = None,
                  agents: Sequence[str] = (), scenarios: Sequence[str] | None = None,
                  conditions: Sequence[str] | None = None, baselines: Sequence[str] | None = None,
                  bundle: bool = True) -> dict:
    """Run (or resume) the benchmark suite, print its tables, write the report; return paths and tables.

    difficulties: levels (``"easy,medium,hard"``) to run every scenario of the suite at (see
    ``e2e-drive evaluate --difficulty``); default: each file's own level.
    agents: the user's agents (agent files or ``package.module:Class``), run beside the shipped ones on the
    same seeds; the episodes of agents that did not change are reused from an earlier run in ``out``
    (:func:`e2e_drive.eval.reuse.prepare_reuse`), so an added agent costs only its own episodes.
    scenarios, conditions, baselines: subsets of the suite's scenarios (names), conditions and shipped agents
    (labels), for small budgets (a tutorial, a test); the results say which. bundle: write the result bundle
    ``out/bundle.json.gz`` (:mod:`e2e_drive.eval.bundle`).
    """
    from e2e_drive.eval.runner import evaluate, load_run
    from e2e_drive.eval.summary import format_table
    from e2e_drive.provenance import commit_label, machine_line

    if suite not in SUITES:
        raise ConfigError(f"--suite {suite!r}: unknown suite; suites: {', '.join(SUITES)}")
    spec = SUITES[suite]
    from e2e_drive.eval.plan import parse_difficulties

    levels = parse_difficulties(difficulties)
    out = out or (("runs/benchmark_v2" if suite == "default" else f"runs/benchmark_{suite}")
                  + (f"_{'-'.join(levels)}" if levels else ""))
    n = episodes or spec.episodes
    if n < 1:
        raise ConfigError(f"--episodes {n}: expected a positive integer")
    envs, shipped = select(suite_envs(spec), scenarios, "--scenarios"), _resolve(spec.agents, "agent file")
    shipped = select(shipped, baselines, "--baselines")
    conds = _select_conditions(spec, conditions)
    all_agents, submitted = with_user_agents(shipped, agents)
    t0 = time.perf_counter()
    reuse_earlier(out, envs, all_agents, n, seed, conds, difficulties)
    summary = evaluate(envs, all_agents, episodes=n, seed=seed, out_dir=out, conditions=conds,
                       workers=workers, backend=backend, address=address, memory_limit_gb=memory_limit_gb,
                       difficulties=difficulties)
    wall_s = time.perf_counter() - t0
    _, rows = load_run(out)
    from e2e_drive.eval.attribution import fill_false_alarms

    fill_false_alarms(out, rows)  # the shield's false alarms, where e2e-drive attribute forked its triggers
    tables = carla_tables(rows, spec.labels)
    tables["table3"] = ability_table(rows, spec.labels)
    tables.update(ranking_tables_of(rows, submitted))
    subset = ", ".join(f"{k} {', '.join(v)}" for k, v in (("scenarios", scenarios), ("conditions", conditions),
                                                           ("baselines", baselines)) if v)
    lines = [f"{spec.version}: {spec.description}" + (f" (a subset: {subset})" if subset else ""), "",
             format_table(summary), "",
             "Table 1 (CARLA paper, Table 1): success rate % [95% Wilson interval] (episodes with an error status)",
             _fixed(tables["table1"]["head"], tables["table1"]["rows"]), "",
             "Table 2 (CARLA paper, Table 2): km driven between infractions [95% exact Poisson interval] (count)",
             _fixed(tables["table2"]["head"], tables["table2"]["rows"]), ""]
    if tables["table3"]["rows"]:
        lines += ["Table 3: ability scores, success % over each ability's scenarios [95% Wilson interval]",
                  _fixed(tables["table3"]["head"], tables["table3"]["rows"]), ""]
    lines += ["Table 4: ranking by the driving score (rank ranges: shared where the intervals cannot separate "
              "agents; * = your agent)", _fixed(tables["ranking"]["head"], tables["ranking"]["rows"]), ""]
    if tables["ranking_abilities"]["rows"]:
        lines += ["Table 5: ability scores with rank ranges, success % [95% Wilson interval] #rank",
                  _fixed(tables["ranking_abilities"]["head"], tables["ranking_abilities"]["rows"]), ""]
    lines += [text_figure(rows, spec.labels), "", *all_findings(rows, spec.labels, submitted)]
    print("\n".join(lines))
    result: dict[str, Any] = {"dir": str(Path(out).resolve()), "episodes": len(rows), "wall_s": wall_s,
                              "suite_version": spec.version, "tables": tables, "submitted": submitted}
    if report:
        from e2e_drive.eval.report import write_report

        paths = write_report(out, focus=submitted)
        result["report"] = paths
        print(f"\nreport: {Path(paths.get('html', Path(out) / 'report.html')).resolve()}")
    print(f"run directory: {result['dir']}  ({spec.version}, {len(rows)} episodes, wall time {wall_s / 60:.1f} min "
          f"this run)")
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "commit": commit_label(),
            "machine": machine_line(), "episodes": n, "seed": seed, "suite": suite, "suite_version": spec.version,
            "difficulties": list(levels), "submitted": submitted,
            "wall_s": wall_s}
    (Path(out) / "benchmark.json").write_text(json.dumps({**meta, "tables": tables}, indent=1))
    if bundle:
        from e2e_drive.eval.bundle import write_bundle

        result["bundle"] = str(write_bundle(out, suite=suite, suite_version=spec.version, command=command,
                                            submitted=submitted, tables=tables).resolve())
        print(f"result bundle: {result['bundle']}  (e2e-drive verify {result['bundle']})")
    if readme:
        update_readme(readme, rows, spec, meta)
        print(f"README results updated: {Path(readme).resolve()}")
    return result


def results_markdown(rows: Sequence[Mapping[str, Any]], spec: Suite, meta: Mapping[str, Any]) -> str:
    """The README's Results section, generated from the run (never typed by hand)."""
    tables = carla_tables(rows, spec.labels)
    abilities = ability_table(rows, spec.labels)
    version = meta.get("suite_version", spec.version)
    wall = meta.get("wall_s")
    parts = [
        f"**{version}** ({spec.description or 'the benchmark suite'}). Numbers from different suite versions are "
        "never compared: each version has its own scenarios, agents and seeds, so a difference between versions "
        "says nothing about an agent.",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit `{meta['commit']}`, on {meta['machine']}; "
        f"{meta['episodes']} paired seeds per agent, scenario and condition (seeds {meta['seed']}.."
        f"{meta['seed'] + meta['episodes'] - 1}), {len(rows)} episodes in all"
        + (f"; wall time {wall / 60:.1f} min." if isinstance(wall, (int, float)) else "."),
        "",
        "**Table 1** (as the CARLA paper's Table 1): success rate %, [95 % Wilson interval]"
        + ("; `(k err)`: k episodes ended with an error status (not driven: counted as failures, scored 0)."
           if any("err)" in cell for row in tables["table1"]["rows"] for cell in row) else "."),
        "",
        _markdown(tables["table1"]["head"], tables["table1"]["rows"]),
        "",
        "**Table 2** (as the CARLA paper's Table 2): km driven between infractions, pooled over scenarios, "
        "[95 % exact Poisson interval] (count); `>x (0)` means no infraction in the km driven.",
        "",
        _markdown(tables["table2"]["head"], tables["table2"]["rows"]),
        "",
    ]
    if abilities["rows"]:
        parts += ["**Table 3**: ability scores, success % over every episode of each ability's scenarios "
                  "[95 % Wilson interval].", "", _markdown(abilities["head"], abilities["rows"]), ""]
    ranking = ranking_tables_of(rows, meta.get("submitted") or ())
    parts += ["**Table 4**: ranking by the driving score, mean [95 % bootstrap interval], with rank ranges: an "
              "agent ranks above another only when their paired difference is clear (interval excluding zero, "
              "Holm-corrected p < 0.05); agents it cannot separate share ranks (`2-4`), listed by name.", "",
              _markdown(ranking["ranking"]["head"], ranking["ranking"]["rows"]), ""]
    parts += [
        "**Figure**: success rate per agent and condition.",
        "",
        "```text",
        text_figure(rows, spec.labels),
        "```",
        "",
        "**What the data says**, from paired per-seed differences: a difference is called better or worse "
        "only when its 95 % bootstrap interval excludes zero and the paired test (McNemar for success, "
        "Wilcoxon for the driving score) gives p < 0.05; otherwise it reads \"no detectable difference\", "
        "never a win.",
        "",
        *(f"- {s}" for s in all_findings(rows, spec.labels)),
    ]
    return "\n".join(parts)


def update_readme(readme: str | Path, rows: Sequence[Mapping[str, Any]], spec: Suite, meta: Mapping[str, Any]) -> None:
    """Replace the text between the README's benchmark-results markers with freshly generated results."""
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ConfigError(f"{path}: no '{README_START}' ... '{README_END}' markers to write the results between")
    body = results_markdown(rows, spec, meta)
    new = re.sub(re.escape(README_START) + r".*?" + re.escape(README_END),
                 lambda _: f"{README_START}\n{body}\n{README_END}", text, flags=re.S)
    path.write_text(new)

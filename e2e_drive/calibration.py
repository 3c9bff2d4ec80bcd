"""Calibration of the ability suite: does every scenario measure what its name says?

``e2e-drive calibrate`` runs the privileged expert, the blind baseline (camera lane keeping at
constant speed, no notion of other vehicles) and the modular stack on every suite scenario
(``envs/abilities/*.toml``) at every difficulty level, on held-out seeds, and checks the suite's
three rules:

- the expert succeeds in at least :data:`EXPERT_FLOOR` of the episodes of every scenario and level;
- the blind baseline succeeds in at most :data:`BLIND_CEILING` of every scenario that tests
  interaction (:data:`INTERACTION_ABILITIES`: a scenario it passes tests nothing);
- difficulty is monotone: the expert's and the modular stack's success do not rise from easy to hard
  (beyond sampling noise: a rise fails when the 95 % interval of the difference lies above zero).

It prints the scenario x difficulty table (success and 95 % Wilson interval per agent) and each
rule's verdict, and with ``--readme`` writes the table between the README's calibration markers.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from e2e_drive.errors import ConfigError
from e2e_drive.eval.stats import newcombe_interval
from e2e_drive.provenance import REPO_ROOT

#: Where the suite's scenario files live (relative to the repository).
SUITE_DIR = "envs/abilities"
#: First held-out seed of the calibration: outside every range used to tune the scenarios and the
#: agents (0..9999), and below the benchmark's 20000.. so neither reuses the other's traffic.
CALIBRATION_SEED = 30000
#: Seeds per scenario, level and agent.
CALIBRATION_EPISODES = 50
#: Agents of the calibration, by role.
EXPERT, BLIND, MODULAR = "agents/expert.toml", "agents/blind.toml", "agents/modular.toml"
#: Agents whose success must not rise from easy to hard.
MONOTONE_AGENTS = ("expert", "modular")
#: The expert's success floor per scenario and level.
EXPERT_FLOOR = 0.95
#: The blind baseline's success ceiling on scenarios that test interaction.
BLIND_CEILING = 0.50
#: Abilities whose scenarios test interaction with other road users (the blind rule applies).
INTERACTION_ABILITIES = ("emergency_braking", "overtaking", "merging", "giving_way")

README_START = "<!-- calibration:start -->"
README_END = "<!-- calibration:end -->"


def suite_files(directory: str | Path | None = None) -> list[str]:
    """The suite's scenario files, sorted; a ConfigError when there are none."""
    folder = Path(directory) if directory is not None else REPO_ROOT / SUITE_DIR
    files = sorted(str(p) for p in folder.glob("*.toml"))
    if not files:
        raise ConfigError(f"{folder}: no scenario files (*.toml) of the ability suite")
    return files


def _level(row: Mapping[str, Any]) -> str:
    return str(row.get("difficulty") or "medium")


def _base(row: Mapping[str, Any]) -> str:
    return str(row["scenario"]).partition("@")[0]


def calibration_table(rows: Sequence[Mapping[str, Any]], agents: Sequence[str],
                      levels: Sequence[str]) -> dict[str, Any]:
    """Per (scenario, level, agent): k, n and the Wilson interval of success, from episode lines."""
    from e2e_drive.eval.stats import wilson_interval

    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    abilities: dict[str, str] = {}
    for r in rows:
        if r.get("condition", "train") != "train":
            continue
        key = (_base(r), _level(r), str(r["agent"]))
        cell = cells.setdefault(key, {"k": 0, "n": 0})
        cell["n"] += 1
        cell["k"] += int(r.get("status") == "success")
        abilities[_base(r)] = str(r.get("ability") or "")
    for cell in cells.values():
        cell["rate"] = cell["k"] / cell["n"]
        cell["low"], cell["high"] = wilson_interval(cell["k"], cell["n"])
    scenarios = sorted({s for s, _, _ in cells}, key=lambda s: (abilities.get(s, ""), s))
    return {"cells": cells, "scenarios": scenarios, "abilities": abilities, "agents": list(agents),
            "levels": list(levels)}


def verdicts(table: Mapping[str, Any]) -> list[tuple[bool, str]]:
    """Each rule's verdict per scenario: (holds, sentence)."""
    cells, out = table["cells"], []
    levels = [lv for lv in ("easy", "medium", "hard") if lv in table["levels"]]
    for s in table["scenarios"]:
        ability = table["abilities"].get(s, "")
        for lv in levels:
            e = cells.get((s, lv, "expert"))
            if e is not None:
                out.append((e["rate"] >= EXPERT_FLOOR,
                            f"{s} {lv}: expert {e['k']}/{e['n']} (floor {EXPERT_FLOOR:.0%})"))
            b = cells.get((s, lv, "blind"))
            if b is not None and ability in INTERACTION_ABILITIES:
                out.append((b["rate"] <= BLIND_CEILING,
                            f"{s} {lv}: blind {b['k']}/{b['n']} (ceiling {BLIND_CEILING:.0%}, tests {ability})"))
        for agent in MONOTONE_AGENTS:
            got = [(lv, cells[(s, lv, agent)]) for lv in levels if (s, lv, agent) in cells]
            if len(got) >= 2:
                out.append(_monotone_verdict(s, agent, got))
    return out


def _monotone_verdict(scenario: str, agent: str, got: list[tuple[str, Mapping[str, Any]]]) -> tuple[bool, str]:
    """Success must not rise from an easier level to a harder one. A rise counts when it is larger
    than the sampling noise: the 95 % interval of the difference (harder - easier, Newcombe) lies
    above zero. A smaller rise is named, with its interval, and does not fail the rule."""
    by_level = " -> ".join(f"{c['rate']:.0%}" for _, c in got)
    rises = []
    for i, (easier, a) in enumerate(got):
        for harder, b in got[i + 1:]:
            if b["rate"] > a["rate"] + 1e-12:
                low, high = newcombe_interval(a["k"], a["n"], b["k"], b["n"])
                rises.append((low, b["rate"] - a["rate"], high, easier, harder))
    head = f"{scenario}: {agent} success by level {by_level}"
    if not rises:
        return True, f"{head} (does not rise from easy to hard)"
    low, diff, high, easier, harder = max(rises)
    span = f"{harder} {diff * 100:+.0f} points over {easier}, 95% interval [{low * 100:+.0f}, {high * 100:+.0f}]"
    if low > 0.0:
        return False, f"{head} (rises: {span})"
    return True, f"{head} (no rise beyond sampling noise: {span})"


def _cell_text(cell: Mapping[str, Any] | None) -> str:
    if cell is None:
        return "-"
    return f"{cell['rate']:.0%} [{cell['low']:.0%}, {cell['high']:.0%}]"


def table_rows(table: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: scenario, ability, level, then one column per agent."""
    head = ["scenario", "ability", "difficulty", *table["agents"]]
    rows = []
    for s in table["scenarios"]:
        for lv in table["levels"]:
            rows.append([s, table["abilities"].get(s, ""), lv,
                         *(_cell_text(table["cells"].get((s, lv, a))) for a in table["agents"])])
    return head, rows


def markdown(table: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The README's calibration section, generated from the run."""
    head, rows = table_rows(table)
    checks = verdicts(table)
    failed = [text for ok, text in checks if not ok]
    lines = [
        f"Generated by `{meta['command']}` on {meta['date']}, commit `{meta['commit']}`, on {meta['machine']}; "
        f"{meta['episodes']} held-out seeds ({meta['seed']}..{meta['seed'] + meta['episodes'] - 1}) per scenario, "
        f"level and agent, training conditions. Success rate [95 % Wilson interval].",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"Rules: the expert succeeds in at least {EXPERT_FLOOR:.0%} of every scenario and level; the blind "
        f"baseline in at most {BLIND_CEILING:.0%} of every scenario that tests interaction "
        f"({', '.join(INTERACTION_ABILITIES)}); the expert's and the modular stack's success do not rise from "
        f"easy to hard beyond sampling noise (the 95 % interval of the difference lies above zero). {len(checks) - len(failed)} of {len(checks)} checks hold"
        + ("." if not failed else "; these do not:"),
        *(f"- {text}" for text in failed),
    ]
    return "\n".join(lines)


def update_readme(readme: str | Path, body: str) -> None:
    """Replace the text between the README's calibration markers."""
    path = Path(readme)
    text = path.read_text()
    if README_START not in text or README_END not in text:
        raise ConfigError(f"{path}: no '{README_START}' ... '{README_END}' markers to write the calibration between")
    path.write_text(re.sub(re.escape(README_START) + r".*?" + re.escape(README_END),
                           lambda _: f"{README_START}\n{body}\n{README_END}", text, flags=re.S))


def run_calibration(envs: Sequence[str] | None = None, agents: Sequence[str] | None = None,
                    episodes: int = CALIBRATION_EPISODES, seed: int = CALIBRATION_SEED,
                    levels: str = "easy,medium,hard", out: str = "runs/calibration", workers: int | None = None,
                    readme: str | None = None, progress: bool = True,
                    command: str = "e2e-drive calibrate") -> dict[str, Any]:
    """Run (or resume) the calibration, print the table and the verdicts; returns them."""
    from e2e_drive.eval.plan import parse_difficulties
    from e2e_drive.eval.runner import evaluate, load_run
    from e2e_drive.provenance import commit_label, machine_line

    files = list(envs) if envs else suite_files()
    chosen = list(agents) if agents else [str(REPO_ROOT / a) for a in (EXPERT, BLIND, MODULAR)]
    level_list = list(parse_difficulties(levels))
    if not level_list:
        raise ConfigError("--difficulty: give at least one level (easy, medium, hard)")
    t0 = time.perf_counter()
    evaluate(files, chosen, episodes=episodes, seed=seed, out_dir=out, workers=workers, progress=progress,
             difficulties=level_list)
    wall_s = time.perf_counter() - t0
    _, rows = load_run(out)
    labels = list(dict.fromkeys(str(r["agent"]) for r in rows))
    table = calibration_table(rows, labels, level_list)
    head, body_rows = table_rows(table)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body_rows)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in body_rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    checks = verdicts(table)
    print()
    for ok, text in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    print(f"\n{sum(ok for ok, _ in checks)} of {len(checks)} checks hold; {len(rows)} episodes, "
          f"{wall_s / 60:.1f} min this run; run directory: {Path(out).resolve()}")
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "commit": commit_label(),
            "machine": machine_line(), "episodes": episodes, "seed": seed}
    if readme:
        update_readme(readme, markdown(table, meta))
        print(f"README calibration updated: {Path(readme).resolve()}")
    return {"table": table, "checks": checks, "wall_s": wall_s, "dir": str(Path(out).resolve())}

"""Evaluator throughput of this checkout against the first benchmark release (commit 1e73a49).

The fixed evaluation: ``e2e-drive evaluate`` of the e2e agent, the modular stack and the expert on
the default highway (``envs/highway.toml``, 40 s episodes), 2 workers, run as users run it (a fresh
process, start-up included) from each tree: the release is exported with ``git archive`` into a
temporary folder and run with ``PYTHONPATH`` pointing at it (same installed dependencies; its own
scenario and agent files and checkpoint). Runs alternate old, new, old, new, ... so that both see
the same machine load. The figure is simulated seconds (the episode lines' ``duration_s``) per wall
second of the command; the ratio is this checkout's figure over the release's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from e2e_drive.errors import ConfigError

#: The first benchmark release: the reference of the throughput target (issue 17: at least 3x).
BASELINE_COMMIT = "1e73a49"
#: The fixed evaluation's agents and scenario, relative to each tree.
AGENTS = ("agents/e2e.toml", "agents/modular.toml", "agents/expert.toml")
SCENARIO = "envs/highway.toml"
WORKERS = 2

_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Timed:
    """One run of the fixed evaluation: which tree, its wall seconds and the simulated seconds it drove."""

    side: str
    wall_s: float
    sim_s: float
    episodes: int

    @property
    def speed(self) -> float:
        """Simulated seconds per wall second."""
        return self.sim_s / self.wall_s if self.wall_s > 0 else float("nan")


def schedule(rounds: int) -> list[str]:
    """The run order: old, new, old, new, ... (``rounds`` of each)."""
    if rounds < 1:
        raise ConfigError(f"rounds {rounds!r}: expected at least 1")
    return [side for _ in range(rounds) for side in ("old", "new")]


def simulated_seconds(episodes_file: Path) -> tuple[float, int]:
    """(sum of the episode lines' ``duration_s``, number of lines) of an ``episodes.jsonl``.

    A line without a number there (an episode that was not driven) counts 0 s; a line that is not JSON
    is an error naming the file and the line (a run of either tree writes whole lines).
    """
    total, n = 0.0, 0
    with Path(episodes_file).open() as fh:
        for k, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{episodes_file}: line {k}: not JSON ({exc.msg})") from None
            value = line.get("duration_s") if isinstance(line, dict) else None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                total += float(value)
            n += 1
    return total, n


def ratio(results: Iterable[Timed]) -> dict[str, float]:
    """Each side's speed (its simulated seconds over its wall seconds, all rounds pooled) and new / old."""
    sums: dict[str, list[float]] = {"old": [0.0, 0.0], "new": [0.0, 0.0]}
    for r in results:
        sums[r.side][0] += r.sim_s
        sums[r.side][1] += r.wall_s
    out = {side: (s / w if w > 0 else float("nan")) for side, (s, w) in sums.items()}
    out["ratio"] = out["new"] / out["old"] if out["old"] > 0 else float("nan")
    return out


def export_tree(commit: str, dest: Path, repo: Path = _ROOT) -> Path:
    """The files of ``commit`` (``git archive``) in ``dest``; ConfigError when git or the commit is missing."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = dest / "tree.tar"
    try:
        proc = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", "-o", str(tar), commit],
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise ConfigError("bench versus: needs git to export the release commit") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["git archive failed"])[-1]
        raise ConfigError(f"bench versus: cannot export commit {commit} from {repo} ({why}); "
                          f"run it from a full clone (git fetch --unshallow)")
    with tarfile.open(tar) as tf:
        tf.extractall(dest, filter="data")
    tar.unlink()
    return dest


def evaluate_command(episodes: int, out: Path, workers: int = WORKERS) -> list[str]:
    """The fixed evaluation as a command line, run from a tree's root."""
    cmd = [sys.executable, "-m", "e2e_drive", "evaluate", "--env", SCENARIO]
    for agent in AGENTS:
        cmd += ["--agent", agent]
    return cmd + ["--episodes", str(episodes), "--seed", "20000", "--out", str(out), "--workers", str(workers),
                  "--no-progress"]


def run_once(side: str, tree: Path, episodes: int, out: Path, workers: int = WORKERS) -> Timed:
    """The fixed evaluation in ``tree`` (a fresh process, PYTHONPATH = the tree), timed."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.run(evaluate_command(episodes, out, workers), cwd=tree, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"bench versus: the {side} tree's evaluation failed (exit {proc.returncode}): {tail}")
    sim, n = simulated_seconds(out / "episodes.jsonl")
    return Timed(side, wall, sim, n)


def bench_versus(episodes: int = 4, rounds: int = 2, commit: str = BASELINE_COMMIT,
                 new_tree: Path = _ROOT) -> list[Timed]:
    """The fixed evaluation, old and new interleaved, ``rounds`` times each."""
    results = []
    with tempfile.TemporaryDirectory(prefix="e2e-bench-versus-") as tmp:
        old_tree = export_tree(commit, Path(tmp) / "old")
        trees = {"old": old_tree, "new": new_tree}
        for k, side in enumerate(schedule(rounds)):
            results.append(run_once(side, trees[side], episodes, Path(tmp) / f"run{k}_{side}"))
    return results


def format_results(results: Sequence[Timed], episodes: int, commit: str = BASELINE_COMMIT) -> str:
    r = ratio(results)
    rows = "  ".join(f"{t.side} {t.speed:.1f}" for t in results)
    return (
        f"fixed evaluation: e2e, modular and expert on {SCENARIO}, {episodes} seeds each, {WORKERS} workers, "
        f"the command's wall time (start-up included), interleaved old/new:\n"
        f"  runs (simulated s per wall s, in order): {rows}\n"
        f"  commit {commit} {r['old']:.1f}   this checkout {r['new']:.1f}   ratio {r['ratio']:.2f}x  "
        f"(target >= 3x, floor 2.5x)"
    )


def bench_and_format(quick: bool = False) -> str:
    episodes = 2 if quick else 4
    results = bench_versus(episodes=episodes, rounds=1 if quick else 2)
    return format_results(results, episodes)

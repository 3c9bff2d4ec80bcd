"""PPO fine-tuning throughput of this checkout against a reference commit, measured in one run.

``e2e-drive rl-finetune`` (agents/e2e.toml, envs/highway.toml, one env) is run as users run it, in a
fresh process from each tree: the reference commit is exported with ``git archive`` (as
:mod:`e2e_drive.bench.versus` does) and run with ``PYTHONPATH`` pointing at it. Runs alternate
old, new, old, new, ... so that both see the same machine load. The figures are env steps (policy
decisions) per CPU second of the whole command (start-up included; the CPU time of the finished
child process, so other processes on the machine do not count) and per wall second.

The same seed gives the same run in both trees when the simulation is unchanged: the final
``episode_return`` of both is printed side by side (equal when the results per seed are equal).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from e2e_drive.bench.versus import BASELINE_COMMIT, export_tree, schedule

_ROOT = Path(__file__).resolve().parents[2]
AGENT = "agents/e2e.toml"
SCENARIO = "envs/highway.toml"


@dataclass(frozen=True)
class PPORun:
    """One rl-finetune command: which tree, its env steps, CPU and wall seconds, and its final return."""

    side: str
    steps: int
    cpu_s: float
    wall_s: float
    episode_return: float | None


def ppo_command(steps: int, out: Path, seed: int = 0) -> list[str]:
    """The measured command line, run from a tree's root."""
    return [sys.executable, "-m", "e2e_drive", "rl-finetune", "--agent", AGENT, "--env", SCENARIO,
            "--steps", str(steps), "--out", str(out), "--envs", "1", "--seed", str(seed), "--device", "cpu"]


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(side: str, tree: Path, steps: int, out: Path) -> PPORun:
    """rl-finetune in ``tree`` (a fresh process, PYTHONPATH = the tree), timed."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    c0, t0 = _children_cpu_s(), time.perf_counter()
    proc = subprocess.run(ppo_command(steps, out), cwd=tree, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu_s() - c0
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"bench ppo: the {side} tree's rl-finetune failed (exit {proc.returncode}): {tail}")
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    done = int(result.get("env_steps", steps)) if isinstance(result, dict) else steps
    ret = result.get("episode_return") if isinstance(result, dict) else None
    return PPORun(side, done, cpu, wall, ret if isinstance(ret, (int, float)) else None)


def bench_ppo(steps: int = 512, rounds: int = 2, commit: str = BASELINE_COMMIT,
              new_tree: Path = _ROOT) -> list[PPORun]:
    """rl-finetune, old and new interleaved, ``rounds`` times each."""
    results = []
    with tempfile.TemporaryDirectory(prefix="e2e-bench-ppo-") as tmp:
        trees = {"old": export_tree(commit, Path(tmp) / "old"), "new": new_tree}
        for k, side in enumerate(schedule(rounds)):
            results.append(run_once(side, trees[side], steps, Path(tmp) / f"run{k}_{side}"))
    return results


def rates(results: Sequence[PPORun]) -> dict[str, float]:
    """Per side: env steps per CPU second and per wall second (all rounds pooled), and new / old."""
    out: dict[str, float] = {}
    for side in ("old", "new"):
        rs = [r for r in results if r.side == side]
        steps = sum(r.steps for r in rs)
        out[f"{side}_cpu"] = steps / sum(r.cpu_s for r in rs) if rs else float("nan")
        out[f"{side}_wall"] = steps / sum(r.wall_s for r in rs) if rs else float("nan")
    out["ratio_cpu"] = out["new_cpu"] / out["old_cpu"]
    out["ratio_wall"] = out["new_wall"] / out["old_wall"]
    return out


def format_results(results: Sequence[PPORun], commit: str = BASELINE_COMMIT) -> str:
    r = rates(results)
    steps = results[0].steps if results else 0
    returns = {side: next((x.episode_return for x in results if x.side == side), None) for side in ("old", "new")}
    same = "same" if returns["old"] == returns["new"] else "DIFFERENT"
    return (
        f"PPO fine-tuning (rl-finetune, {AGENT} on {SCENARIO}, 1 env, {steps} env steps, seed 0, whole command "
        f"with start-up, interleaved old/new):\n"
        f"  runs (env steps per CPU s, in order): "
        + "  ".join(f"{x.side} {x.steps / x.cpu_s:.1f}" for x in results) + "\n"
        f"  commit {commit} {r['old_cpu']:.1f}   this checkout {r['new_cpu']:.1f} env steps per CPU s   "
        f"ratio {r['ratio_cpu']:.2f}x  (target >= 5x)\n"
        f"  per wall s: commit {commit} {r['old_wall']:.1f}   this checkout {r['new_wall']:.1f}   "
        f"ratio {r['ratio_wall']:.2f}x\n"
        f"  final episode return: commit {commit} {returns['old']}   this checkout {returns['new']}  ({same})"
    )


def bench_and_format(quick: bool = False) -> str:
    results = bench_ppo(steps=256 if quick else 512, rounds=1 if quick else 2)
    return format_results(results)

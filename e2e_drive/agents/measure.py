"""A small measuring script for agents (a stand-in until the evaluator runs the comparisons).

    python -m e2e_drive.agents.measure --agent agents/expert.toml --env envs/highway.toml \
        --seeds 1000:1050 [--set duration_s=20] [--small-camera]

Prints one JSON line per episode and a summary: success rate, at-fault collisions,
collisions, off-road episodes, mean speed and the agent's per-stage timings. Outcomes come
from ground truth (``info``) at every policy step; the evaluator records at the simulation
rate and applies metrics.md's definitions exactly, so its numbers take precedence.

At fault here (simplified nuPlan rule): the other party's centre is ahead of the ego's, or
beside it (overlapping along the road) while the ego is changing lane.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from e2e_drive.agents.base import agent_needs, agent_timings_ms, call_act
from e2e_drive.agents.loading import load_agent

#: Tiny camera used with --small-camera for agents that need none (the expert): saves render time.
SMALL_CAMERA = {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}}


@dataclass
class EpisodeSummary:
    seed: int
    status: str  # success | collision | offroad | agent_error
    at_fault: bool
    offroad: bool
    steps: int
    time_s: float
    mean_speed_mps: float
    lane_changes: int


def _changing_lane(history: list[dict[str, Any]], window: int = 15) -> bool:
    """The ego's lane id changed in the last ``window`` steps, or it is far off its lane centre."""
    recent = history[-window:]
    ids = {h["lane"]["id"] for h in recent}
    return len(ids) > 1 or abs(recent[-1]["lane"]["lateral_offset_m"]) > 0.6


def _at_fault(info: dict[str, Any], history: list[dict[str, Any]]) -> bool:
    others = [n for n in info.get("neighbours", ()) if n.get("crashed")] or list(info.get("neighbours", ()))[:1]
    if not others:
        return True
    other = min(others, key=lambda n: abs(n["gap_m"]))
    ahead = other["longitudinal_m"] > 0.0
    beside = abs(other["longitudinal_m"]) < 0.5 * (info["ego"]["length_m"] + other.get("length_m", 5.0))
    return ahead or (beside and _changing_lane(history))


def run_episode(env: Any, agent: Any, seed: int) -> EpisodeSummary:
    """One episode; the outcome is read from ground truth only."""
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    history = [info]
    speeds, offroad, lane_changes = [], False, 0
    status, at_fault = "success", False
    done = False
    while not done:
        try:
            action, _ = call_act(agent, obs, info)
        except Exception:  # an agent bug is an outcome, never a crash of the measurement
            status = "agent_error"
            break
        obs, _, terminated, truncated, info = env.step(action)
        prev_lane = history[-1]["lane"]
        if info["lane"]["id"] != prev_lane["id"] and info["lane"]["index"][:2] == prev_lane["index"][:2]:
            lane_changes += 1
        history.append(info)
        speeds.append(info["ego"]["speed_mps"])
        lane = info["lane"]
        if not info["on_road"] or abs(lane["lateral_offset_m"]) > 0.5 * lane["width_m"]:
            offroad = True
        if info["crashed"]:
            status, at_fault = "collision", _at_fault(info, history)
            break
        done = terminated or truncated
    if status == "success" and offroad:
        status = "offroad"
    return EpisodeSummary(seed=seed, status=status, at_fault=at_fault, offroad=offroad, steps=len(speeds),
                          time_s=float(info["time_s"]), mean_speed_mps=float(np.mean(speeds)) if speeds else 0.0,
                          lane_changes=lane_changes)


def measure(agent: Any, env: Any, seeds: Sequence[int], *, verbose: bool = True) -> dict[str, Any]:
    """Run ``agent`` on ``seeds``; return the summary (and print one JSON line per episode)."""
    episodes = []
    for seed in seeds:
        ep = run_episode(env, agent, seed)
        episodes.append(ep)
        if verbose:
            print(json.dumps(asdict(ep)), flush=True)
    n = max(len(episodes), 1)
    return {
        "episodes": len(episodes),
        "success_rate": sum(e.status == "success" for e in episodes) / n,
        "no_at_fault_collision_and_on_road_rate": sum(not e.at_fault and not e.offroad and e.status != "agent_error"
                                                      for e in episodes) / n,
        "at_fault_collisions": sum(e.at_fault for e in episodes),
        "collisions": sum(e.status == "collision" for e in episodes),
        "offroad_episodes": sum(e.offroad for e in episodes),
        "agent_errors": sum(e.status == "agent_error" for e in episodes),
        "mean_speed_mps": float(np.mean([e.mean_speed_mps for e in episodes])) if episodes else 0.0,
        "lane_changes_per_episode": float(np.mean([e.lane_changes for e in episodes])) if episodes else 0.0,
        "timings_ms": agent_timings_ms(agent),
    }


def _parse_seeds(text: str) -> list[int]:
    if ":" in text:
        a, b = text.split(":")
        return list(range(int(a), int(b)))
    return [int(s) for s in text.split(",")]


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", required=True, help="agent file or package.module:Class")
    parser.add_argument("--env", default=None, help="scenario file (envs/*.toml); default: the built-in highway")
    parser.add_argument("--seeds", default="0:20", help="a:b (range) or a,b,c")
    parser.add_argument("--set", action="append", default=[], help="config override key=value (JSON value)")
    parser.add_argument("--small-camera", action="store_true",
                        help="render a tiny camera (only for agents that declare they need none)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from e2e_drive.env import make_env

    agent = load_agent(args.agent)
    overrides = _parse_set(args.set)
    if args.small_camera:
        if agent_needs(agent).cameras != {}:
            parser.error("--small-camera is only for agents that declare cameras={} (they read no frames)")
        overrides.setdefault("cameras", SMALL_CAMERA)
    env = make_env(args.env, overrides)
    t0 = time.perf_counter()
    summary = measure(agent, env, _parse_seeds(args.seeds), verbose=not args.quiet)
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps({"summary": summary, "agent": args.agent, "env": args.env, "seeds": args.seeds,
                      "overrides": overrides}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

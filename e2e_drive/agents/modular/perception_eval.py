"""Perception errors against ground truth, so a failure can be blamed on seeing or on deciding.

    e2e-drive perception-eval --env envs/highway.toml --episodes 20 [--seed 0] [--driver agents/expert.toml]
    python -m e2e_drive.agents.modular.perception_eval --env envs/highway.toml --episodes 20

A driver (default: the privileged expert, so every perception sees the same, realistic
trajectories) drives; the perception under test (default: the camera perception of
agents/modular.toml) runs on the frames at every policy step, open loop, and is compared
with ``info``:

- lateral offset error |perceived - true| [m] and heading error [rad], when the lane is valid;
- lane index / lane count accuracy;
- lead gap error |perceived - true| / true for the lead in the ego lane within 50 m (steps
  where both see a lead), and how often the true lead is perceived at all;
- detection precision and recall within 50 m ahead, inside the camera's field of view: a
  perceived vehicle matches a true one when its gap is within max(3 m, 15 %) and its lateral
  position within 1.5 m (greedy); recall counts every true vehicle ahead within 50 m inside
  the field of view, so vehicles hidden behind others count as misses; precision ignores
  tracks the perception keeps (predicts) beside the car, outside the field of view;
- beside and behind: how often a true vehicle in a next lane within the lane-change zone
  (gap -15..+8 m) is perceived there (its lane, gap within 2.5 m), and, for a perception that
  reports ``clear_age_s`` (side cameras), how often a next lane it calls seen clear (within
  ``SEEN_CLEAR_MAX_AGE_S``) has a true vehicle in the zone beside the ego (gap -5..+5 m): the
  lane-change gate's false "clear" rate.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any, Sequence

import numpy as np

from e2e_drive.agents.base import info_for
from e2e_drive.agents.loop import drive_episode

RANGE_M = 50.0


def _lead(vehicles: list[tuple[float, float, int | None]], max_gap: float) -> float | None:
    gaps = [g for g, _, d in vehicles if d == 0 and 0.0 <= g <= max_gap]
    return min(gaps) if gaps else None


def _match(perceived: list[tuple[float, float]], truth: list[tuple[float, float]]) -> int:
    pairs = []
    for i, (pg, pl) in enumerate(perceived):
        for j, (tg, tl) in enumerate(truth):
            dg, dl = abs(pg - tg), abs(pl - tl)
            if dg <= max(3.0, 0.15 * tg) and dl <= 1.5:
                pairs.append((dg / max(tg, 5.0) + dl / 1.5, i, j))
    pairs.sort()
    used_i, used_j = set(), set()
    for _, i, j in pairs:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
    return len(used_i)


def _in_fov(gap: float, lateral_from_ego: float, fov_deg: float, ego_half: float = 2.5) -> bool:
    x = gap + ego_half - 0.5
    return x > 4.0 and abs(lateral_from_ego) < math.tan(math.radians(fov_deg) / 2.0) * x


class PerceptionScore:
    """Observer of :func:`e2e_drive.agents.loop.drive_episode`: before each action, runs the
    perception under test on the observation (open loop) and compares it with ``info``."""

    def __init__(self, perception: Any, fov_deg: float = 60.0) -> None:
        self.perception, self.fov_deg = perception, fov_deg
        self.lat_err: list[float] = []
        self.head_err: list[float] = []
        self.gap_err: list[float] = []
        self.rel_err: list[float] = []
        self.lane_ok = self.count_ok = self.lane_n = 0
        self.lead_true = self.lead_seen = 0
        self.tp = self.n_pred = self.n_true = self.tp_rec = 0
        self.steps = 0
        self.side_true = self.side_seen = 0
        self.clear_calls = self.clear_wrong = 0

    def on_observation(self, env: Any, obs: dict, info: dict) -> None:
        fov_deg = self.fov_deg
        p = self.perception.perceive(obs, info_for(self.perception, info))
        lane = info["lane"]
        ego_d = float(lane["lateral_offset_m"])
        if p.lane_valid:
            self.lat_err.append(abs(p.lateral_offset_m - ego_d))
            self.head_err.append(abs(p.heading_error_rad - float(lane["heading_error_rad"])))
        self.lane_n += 1
        self.lane_ok += int(p.lane_id == lane["id"])
        self.count_ok += int(p.lanes_count == lane["lanes_count"])
        truth = []
        for n in info["neighbours"]:
            lat = float(n["lateral_m"]) + ego_d    # from the ego lane centre
            delta = n.get("lane_delta")
            truth.append((float(n["gap_m"]), lat, None if delta is None else int(delta),
                          float(n["relative_speed_mps"]), float(n["lateral_m"])))
        t_lead = [t for t in truth if t[2] == 0 and 0.0 <= t[0] <= RANGE_M]
        p_vs = [(v.gap_m, v.lateral_m, v.lane_delta, v.relative_speed_mps) for v in p.vehicles]
        if t_lead:
            tl = min(t_lead, key=lambda t: t[0])
            self.lead_true += 1
            p_lead = [v for v in p_vs if v[2] == 0 and v[0] >= -2.0]
            if p_lead:
                pl = min(p_lead, key=lambda v: v[0])
                if abs(pl[0] - tl[0]) < max(5.0, 0.3 * tl[0]):
                    self.lead_seen += 1
                self.gap_err.append(abs(pl[0] - tl[0]) / max(tl[0], 1.0))
                self.rel_err.append(abs(pl[3] - tl[3]))
        t_det = [(t[0], t[1]) for t in truth
                 if t[2] is not None and 0.0 <= t[0] <= RANGE_M and _in_fov(t[0], t[4], fov_deg)]
        # a perceived vehicle counts as a detection where the camera sees (tracks coasting
        # beside the car, outside the field of view, are memory, not detections)
        p_det = [(v[0], v[1]) for v in p_vs
                 if 0.0 <= v[0] <= RANGE_M and _in_fov(v[0], v[1] - p.lateral_offset_m, fov_deg + 4.0)]
        t_all = [(t[0], t[1]) for t in truth if -5.0 <= t[0] <= RANGE_M + 8.0]
        for t in truth:
            if t[2] in (-1, 1) and -15.0 <= t[0] <= 8.0:
                self.side_true += 1
                self.side_seen += int(any(v[2] == t[2] and abs(v[0] - t[0]) <= 2.5 for v in p_vs))
        seen_clear = getattr(p, "lane_seen_clear", None)
        for delta in (-1, 1) if seen_clear is not None else ():
            if seen_clear(delta):
                self.clear_calls += 1
                self.clear_wrong += int(any(t[2] == delta and -5.0 <= t[0] <= 5.0 for t in truth))
        self.tp_rec += _match(p_det, t_det)
        self.n_true += len(t_det)
        self.tp += _match(p_det, t_all)
        self.n_pred += len(p_det)
        self.steps += 1

    def result(self, episodes: int) -> dict[str, Any]:
        """The scores over every step observed (see the module docstring)."""

        def stats(xs: list[float]) -> dict[str, float | None]:
            if not xs:
                return {"median": None, "mean": None, "p90": None, "n": 0}
            a = np.asarray(xs)
            return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
                    "n": int(len(a))}

        steps = self.steps
        return {
            "episodes": episodes,
            "steps": steps,
            "lateral_offset_error_m": stats(self.lat_err),
            "heading_error_rad": stats(self.head_err),
            "lead_gap_relative_error": stats(self.gap_err),
            "lead_relative_speed_error_mps": stats(self.rel_err),
            "lead_detected_rate": self.lead_seen / self.lead_true if self.lead_true else None,
            "lane_valid_rate": len(self.lat_err) / max(steps, 1),
            "lane_id_accuracy": self.lane_ok / max(self.lane_n, 1),
            "lanes_count_accuracy": self.count_ok / max(self.lane_n, 1),
            "detection_precision_50m": self.tp / self.n_pred if self.n_pred else None,
            "detection_recall_50m": self.tp_rec / self.n_true if self.n_true else None,
            "beside_behind_recall": self.side_seen / self.side_true if self.side_true else None,
            "seen_clear_calls": self.clear_calls,
            "seen_clear_false_rate": self.clear_wrong / self.clear_calls if self.clear_calls else None,
        }


def evaluate_perception(env: Any, perception: Any, driver: Any, seeds: Sequence[int],
                        max_steps: int | None = None, fov_deg: float = 60.0) -> dict[str, Any]:
    """Run ``driver`` on ``seeds`` and measure ``perception`` (open loop) at every step."""
    score = PerceptionScore(perception, fov_deg)
    cap = None if max_steps is None else max(1, max_steps)  # every episode takes at least one step
    for seed in seeds:
        perception.reset(seed)
        drive_episode(env, driver, seed, [score], max_steps=cap)
    return score.result(len(seeds))


def _perception_from(agent_path: str) -> Any:
    from e2e_drive.agents.loading import load_agent

    agent = load_agent(agent_path)
    perception = getattr(agent, "perception", None)
    if perception is None or not hasattr(perception, "perceive"):
        from e2e_drive.errors import ConfigError

        raise ConfigError(f"--agent {agent_path}: the agent has no .perception stage to evaluate")
    return perception


def add_perception_eval(sub: Any) -> argparse.ArgumentParser:
    """Add the ``perception-eval`` subcommand to an argparse subparsers object; returns its parser."""
    p = sub.add_parser("perception-eval", help="measure camera perception against ground truth",
                       description=__doc__.splitlines()[0])
    _add_args(p)
    p.set_defaults(func=run_cli)
    return p


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="envs/highway.toml", help="scenario file (envs/*.toml)")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (seeds seed .. seed+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--agent", default="agents/modular.toml", help="agent whose .perception is measured")
    p.add_argument("--driver", default="agents/expert.toml", help="agent that drives (default: the expert)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on steps per episode")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run_cli(args: argparse.Namespace) -> int:
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.env import make_env

    perception = _perception_from(args.agent)
    driver = load_agent(args.driver)
    env = make_env(args.env)
    spec = next(iter(env.unwrapped.camera_specs.values()))
    t0 = time.perf_counter()
    result = evaluate_perception(env, perception, driver, list(range(args.seed, args.seed + args.episodes)),
                                 max_steps=args.max_steps, fov_deg=spec.fov_deg if spec.kind == "dashcam" else 179.0)
    result.update({"env": args.env, "agent": args.agent, "driver": args.driver, "seeds": [args.seed, args.seed + args.episodes],
                   "wall_s": round(time.perf_counter() - t0, 1)})
    env.close()
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        print(f"{key:32s} {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perception-eval", description=__doc__.splitlines()[0])
    _add_args(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

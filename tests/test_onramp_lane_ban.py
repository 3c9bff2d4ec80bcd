"""onramp_merge's traffic rule: along the junction the highway's left lane does not change into the
right lane (the one the ramp joins), so the gap the ego picks stays a gap; seed 1000 at hard saw two
such cut-ins in its first 12 s before the rule."""

from __future__ import annotations

from e2e_drive.agents import load_agent
from e2e_drive.env import make_env
from e2e_drive.scenarios.abilities.onramp_merge import NO_RIGHT_CHANGE_EDGES
from test_runner import stock_idm_parameters  # noqa: F401  (autouse fixture: stock IDM in this process)


def test_left_lane_traffic_does_not_move_into_the_lane_the_ramp_joins():
    env = make_env("envs/abilities/onramp_merge.toml",
                   overrides={"cameras": {"dashcam": {"kind": "dashcam", "width_px": 32, "height_px": 16}},
                              "difficulty": "hard"})
    agent = load_agent("agents/expert.toml")
    obs, info = env.reset(seed=1000)
    agent.reset(seed=1000)
    sim = env.unwrapped
    in_left: set[int] = set()
    moved_right = []
    for _ in range(60):
        obs, _, terminated, truncated, info = env.step(agent.act(obs, info))
        for v in sim.road.vehicles:
            if v is sim.vehicle or tuple(v.lane_index[:2]) not in NO_RIGHT_CHANGE_EDGES:
                continue
            if v.lane_index[2] == 0:
                in_left.add(id(v))
            elif v.lane_index[2] == 1 and id(v) in in_left:
                moved_right.append(v.lane_index)
                in_left.discard(id(v))
        if terminated or truncated:
            break
    assert in_left  # there is left-lane traffic to watch
    assert moved_right == []
    env.close()

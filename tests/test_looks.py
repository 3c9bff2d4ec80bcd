"""Looks (e2e_drive/sensors/looks.py, look_render.py): the plain default unchanged byte for byte,
train and held-out looks drawn per seed, deterministic across processes, bad input one line."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from e2e_drive.env import make_env
from e2e_drive.errors import ConfigError
from e2e_drive.eval.conditions import CONDITIONS
from e2e_drive.sensors.conditions import SensorConditions
from e2e_drive.sensors.looks import BODY_COLOURS, RANGES, SET_WEATHERS, draw_look, in_ranges

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMS = {"d": {"kind": "dashcam", "width_px": 80, "height_px": 32},
        "g": {"kind": "dashcam", "width_px": 64, "height_px": 32, "grayscale": True},
        "b": {"kind": "bev", "width_px": 32, "height_px": 32}}

#: sha256 of the plain frames below, computed on main's code before looks existed (commit 150a161):
#: the shipped e2e checkpoint was trained on these pixels.
PLAIN_SHA256 = "97fa5f067e89d9363027f08357f37ee7f5ec6812637b8fddf03cfc2cb1af1987"


def _plain_digest() -> str:
    h = hashlib.sha256()
    for palette, cams in (("day", None), ("night", None), ("dusk", {"g": {"kind": "dashcam", "width_px": 128,
                                                                          "height_px": 64, "grayscale": True}})):
        over = {"vehicles_count": 12, "duration_s": 3.0,
                "conditions": {"palette": palette, "noise_std": 4.0 if palette == "night" else 0.0}}
        if cams:
            over["cameras"] = cams
        env = make_env(os.path.join(REPO, "envs/highway_multicam.toml"), over)
        obs, _ = env.reset(seed=7)
        names = [k for k in obs if k not in ("speed", "command", "command_distance_m")]
        for _ in range(4):
            for name in names:
                h.update(np.ascontiguousarray(obs[name]).tobytes())
            obs, *_ = env.step(np.array([0.1, 0.0], np.float32))
        env.close()
    return h.hexdigest()


def test_plain_is_byte_identical_to_before_looks():
    assert _plain_digest() == PLAIN_SHA256


def _frames(look: dict, seed: int, steps: int = 2) -> list[np.ndarray]:
    env = make_env(None, {"lanes_count": 3, "vehicles_count": 10, "duration_s": 3.0, "cameras": CAMS,
                          "conditions": look})
    obs, _ = env.reset(seed=seed)
    out = [obs[n] for n in CAMS]
    for _ in range(steps):
        obs, *_ = env.step(np.array([0.1, 0.0], np.float32))
        out += [obs[n] for n in CAMS]
    env.close()
    return out


LOOKS = [{"look": "train", "look_weather": "clear"}, {"look": "train", "look_weather": "overcast"},
         {"look": "heldout", "look_weather": "fog"}, {"look": "heldout", "look_weather": "rain"},
         {"look": "heldout", "look_weather": "rain", "look_hour": 20.5}, {"look": "heldout", "look_hour": 6.0}]


@pytest.mark.parametrize("look", LOOKS, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_frames_are_not_blank_and_differ_from_plain_and_between_seeds(look):
    frames = _frames(look, seed=1, steps=0)
    plain = _frames({}, seed=1, steps=0)
    other = _frames(look, seed=2, steps=0)
    for f, p, o in zip(frames, plain, other):
        assert f.shape == p.shape and f.dtype == np.uint8
        assert f.std() > 2.0 and f.max() > 20, "a blank frame"
        assert not np.array_equal(f, p)
    assert any(not np.array_equal(f, o) for f, o in zip(frames, other))


def test_same_seed_same_frames_in_two_processes():
    code = ("import hashlib, numpy as np, sys; sys.path.insert(0, 'tests'); from test_looks import _frames\n"
            "h = hashlib.sha256()\n"
            "for look in ({'look': 'train'}, {'look': 'heldout', 'look_weather': 'rain'}):\n"
            "    for f in _frames(look, seed=5): h.update(f.tobytes())\n"
            "print(h.hexdigest())")
    env = dict(os.environ, PYTHONPATH=REPO, PYTHONHASHSEED="random")
    outs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)]
    assert outs[0] == outs[1] and len(outs[0]) == 64


def test_heldout_parameters_fall_outside_the_train_ranges():
    for seed in range(40):
        look = draw_look("heldout", np.random.default_rng(seed))
        assert look is not None and look.weather in SET_WEATHERS["heldout"]
        assert look.weather not in SET_WEATHERS["train"]
        for key, value in look.params().items():
            assert in_ranges(value, RANGES["heldout"][key]), key
            assert not in_ranges(value, RANGES["train"][key]), key
        train = draw_look("train", np.random.default_rng(seed))
        for key, value in train.params().items():
            assert in_ranges(value, RANGES["train"][key]) and not in_ranges(value, RANGES["heldout"][key]), key
    assert not set(BODY_COLOURS["train"]) & set(BODY_COLOURS["heldout"])
    assert draw_look("plain", np.random.default_rng(0)) is None


def test_vehicles_keep_their_type_and_colour_for_the_episode():
    env = make_env(None, {"vehicles_count": 10, "duration_s": 3.0, "cameras": CAMS, "conditions": {"look": "train"}})
    env.reset(seed=3)
    sim = env.unwrapped
    first = {id(v): sim.scene.vehicle(v, sim.road) for v in sim.road.vehicles}
    for _ in range(3):
        env.step(np.array([0.0, 0.0], np.float32))
    assert all(sim.scene.vehicle(v, sim.road) is first[id(v)] for v in sim.road.vehicles)
    assert len({vl.body for vl in first.values()}) > 1
    env.close()


@pytest.mark.parametrize("table, key", [
    ({"look": "sunny"}, "look"),
    ({"look": "train", "look_weather": "snow"}, "look_weather"),
    ({"look": "train", "look_weather": "fog"}, "look_weather"),
    ({"look": "heldout", "look_hour": 12.0}, "look_hour"),
    ({"look": "train", "look_hour": 30}, "look_hour"),
    ({"look_hour": 10.0}, "look_hour"),
    ({"look": "heldout", "palette": "night"}, "palette"),
    # every look key with a value of the wrong type, and the set's own limits
    ({"look": 3}, "look"),
    ({"look": ""}, "look"),
    ({"look": "train", "look_weather": 1}, "look_weather"),
    ({"look": "heldout", "look_weather": "clear"}, "look_weather"),
    ({"look_weather": "fog"}, "look_weather"),
    ({"look": "train", "look_hour": "10"}, "look_hour"),
    ({"look": "train", "look_hour": True}, "look_hour"),
    ({"look": "train", "look_hour": float("nan")}, "look_hour"),
    ({"look": "heldout", "look_hour": 8.5}, "look_hour"),
    ({"look": "train", "look_fog": 0.01}, "look_fog"),
])
def test_bad_look_input_is_one_line_naming_the_key(table, key):
    with pytest.raises(ConfigError) as err:
        SensorConditions.from_dict(table, "envs/x.toml [config] conditions")
    msg = str(err.value)
    assert "\n" not in msg and key in msg and msg.startswith("envs/x.toml")


@pytest.mark.parametrize("args, key", [
    (("sunny",), "look"), (("train", "snow"), "look_weather"), (("heldout", "overcast"), "look_weather"),
    (("train", None, "x"), "look_hour"), (("train", None, float("inf")), "look_hour"),
    (("heldout", None, 12.0), "look_hour"), (("plain", "rain"), "look_weather"),
])
def test_draw_look_rejects_bad_keys_in_one_line(args, key):
    with pytest.raises(ConfigError) as err:
        draw_look(args[0], np.random.default_rng(0), *args[1:])
    msg = str(err.value)
    assert "\n" not in msg and f"{key} = " in msg


def test_named_look_conditions_exist():
    assert CONDITIONS["heldout_looks"].overrides == {"conditions": {"look": "heldout"}}
    assert CONDITIONS["train_looks"].overrides == {"conditions": {"look": "train"}}

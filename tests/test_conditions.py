"""Sensor conditions: determinism, each condition's effect, latency, miscalibration, validation."""

from __future__ import annotations

import numpy as np
import pytest
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.kinematics import Vehicle

from e2e_drive.errors import ConfigError
from e2e_drive.sensors import Camera, CameraSpec
from e2e_drive.sensors.conditions import FrameDelay, SensorConditions, apply, miscalibrated


@pytest.fixture(scope="module")
def scene():
    road = Road(network=RoadNetwork.straight_road_network(lanes=3, length=1000.0), vehicles=[])
    ego = Vehicle(road, np.array([100.0, 4.0]), 0.0, 20.0)
    road.vehicles += [ego, Vehicle(road, np.array([125.0, 4.0]), 0.0, 20.0)]
    return road, ego


@pytest.fixture(scope="module")
def frame(scene):
    return Camera(CameraSpec()).render(*scene)


PIXEL_CONDITIONS = {
    "noise_std": SensorConditions(noise_std=8.0),
    "blur_sigma_px": SensorConditions(blur_sigma_px=1.5),
    "blur_kernel_px": SensorConditions(blur_kernel_px=5),
    "brightness": SensorConditions(brightness=40.0),
    "contrast": SensorConditions(contrast=0.5),
    "occlusion_count": SensorConditions(occlusion_count=3, occlusion_size=0.2),
}


@pytest.mark.parametrize("name", list(PIXEL_CONDITIONS))
def test_each_condition_changes_the_frame_and_is_deterministic_for_a_seed(name, frame):
    cond = PIXEL_CONDITIONS[name]
    a = apply(frame, cond, np.random.default_rng(7))
    b = apply(frame, cond, np.random.default_rng(7))
    assert a.dtype == np.uint8 and a.shape == frame.shape
    assert np.array_equal(a, b)
    assert not np.array_equal(a, frame)


def test_random_conditions_differ_between_seeds(frame):
    for cond in (SensorConditions(noise_std=5.0), SensorConditions(occlusion_count=2)):
        a = apply(frame, cond, np.random.default_rng(1))
        b = apply(frame, cond, np.random.default_rng(2))
        assert not np.array_equal(a, b)


def test_apply_leaves_its_input_alone_and_neutral_conditions_change_nothing(frame):
    before = frame.copy()
    apply(frame, SensorConditions(noise_std=5, blur_sigma_px=1, brightness=10, occlusion_count=2),
          np.random.default_rng(0))
    assert np.array_equal(frame, before)
    neutral = SensorConditions()
    assert neutral.is_neutral
    out = apply(frame, neutral, np.random.default_rng(0))
    assert np.array_equal(out, frame) and out is not frame


def test_gray_frames_keep_their_shape(scene):
    gray = Camera(CameraSpec(width_px=128, height_px=64, grayscale=True)).render(*scene)
    for cond in PIXEL_CONDITIONS.values():
        assert apply(gray, cond, np.random.default_rng(0)).shape == (64, 128, 1)


def test_brightness_and_contrast_act_as_documented(frame):
    brighter = apply(frame, SensorConditions(brightness=30.0), np.random.default_rng(0))
    assert np.array_equal(brighter, np.clip(frame.astype(int) + 30, 0, 255))
    flat = apply(frame, SensorConditions(contrast=0.5), np.random.default_rng(0))
    assert flat.std() < frame.std()


def test_occlusion_patches_have_the_requested_size_and_value(frame):
    cond = SensorConditions(occlusion_count=1, occlusion_size=0.25, occlusion_value=0)
    out = apply(frame, cond, np.random.default_rng(3))
    side = round(0.25 * frame.shape[0])
    rows, cols = np.nonzero((out == 0).all(axis=2))
    assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side


def test_palette_condition_changes_the_render(scene):
    cam = Camera(CameraSpec())
    night = SensorConditions(palette="night")
    assert not np.array_equal(cam.render(*scene, palette=night.palette), cam.render(*scene))


def test_miscalibration_moves_the_rendered_camera_not_the_nominal_one(scene):
    spec = CameraSpec()
    for cond in (SensorConditions(calib_pitch_deg=1.0), SensorConditions(calib_yaw_deg=-2.0),
                 SensorConditions(calib_height_m=0.2)):
        actual = miscalibrated(spec, cond)
        assert actual != spec and spec.pitch_deg == 6.0 and spec.height_m == 1.4
        assert not np.array_equal(Camera(actual).render(*scene), Camera(spec).render(*scene))
    assert miscalibrated(spec, SensorConditions()) is spec
    with pytest.raises(ConfigError, match="pitch_deg"):
        miscalibrated(spec.replace(pitch_deg=12.0), SensorConditions(calib_pitch_deg=9.0))


def test_frame_delay_returns_the_frame_k_steps_old():
    frames = [np.full((2, 2, 1), i, np.uint8) for i in range(10)]
    delay = FrameDelay(3)
    seen = [int(delay.push(f)[0, 0, 0]) for f in frames]
    assert seen == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    delay.reset()
    assert int(delay.push(frames[9])[0, 0, 0]) == 9
    no_delay = FrameDelay(0)
    assert all(no_delay.push(f) is f for f in frames)
    with pytest.raises(ConfigError, match="latency_steps"):
        FrameDelay(-1)


@pytest.mark.parametrize("changes, key", [
    ({"noise_std": -1.0}, "noise_std"),
    ({"blur_kernel_px": 4}, "blur_kernel_px"),
    ({"contrast": 0.0}, "contrast"),
    ({"palette": "noon"}, "palette"),
    ({"occlusion_size": 1.5}, "occlusion_size"),
    ({"latency_steps": 1.5}, "latency_steps"),
    ({"calib_pitch_deg": 30.0}, "calib_pitch_deg"),
    ({"brightness": "high"}, "brightness"),
])
def test_invalid_conditions_name_the_key(changes, key):
    with pytest.raises(ConfigError, match=key):
        SensorConditions(**changes)
    with pytest.raises(ConfigError, match="unknown key 'fog'"):
        SensorConditions.from_dict({"fog": 1.0})


def test_condition_file_keys_are_checked_by_strict(tmp_path):
    from e2e_drive.eval import conditions

    path = tmp_path / "wet.toml"
    path.write_text('descripton = "wet"\n[config]\nduration_s = 5.0\n')
    with pytest.raises(ConfigError, match=rf"^{path}: unknown key 'descripton'; did you mean 'description'\? "
                                          r"allowed keys: config, description$"):
        conditions.resolve_condition(str(path))

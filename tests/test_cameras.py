"""Cameras: pinhole projection, what the frames show, and spec validation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from highway_env.road.lane import CircularLane, LineType
from highway_env.road.road import Road, RoadNetwork
from highway_env.vehicle.kinematics import Vehicle
from highway_env.vehicle.objects import Obstacle

from e2e_drive.errors import ConfigError
from e2e_drive.sensors import (
    Camera,
    CameraSpec,
    focal_px,
    ground_to_pixel,
    horizon_row,
    intrinsics,
    pixel_to_ground,
    project,
)
from e2e_drive.sensors.palettes import PALETTES

SPEC = CameraSpec(kind="dashcam", width_px=200, height_px=66, fov_deg=60.0, pitch_deg=6.0,
                  height_m=1.4, longitudinal_offset_m=0.5)


def straight_road(lanes: int = 3, length_m: float = 2000.0) -> Road:
    return Road(network=RoadNetwork.straight_road_network(lanes=lanes, length=length_m), vehicles=[])


def ring_road(radius_m: float = 60.0) -> Road:
    net = RoadNetwork()
    c, s, n = LineType.CONTINUOUS, LineType.STRIPED, LineType.NONE
    net.add_lane("a", "b", CircularLane((0, 0), radius_m, 0, 2 * np.pi, clockwise=True, line_types=[c, s]))
    net.add_lane("a", "b", CircularLane((0, 0), radius_m + 4, 0, 2 * np.pi, clockwise=True, line_types=[n, c]))
    return Road(network=net, vehicles=[])


def add_ego(road: Road, position: tuple[float, float], heading: float = 0.0) -> Vehicle:
    ego = Vehicle(road, np.array(position, dtype=float), heading, 20.0)
    road.vehicles.append(ego)
    return ego


# ---------------------------------------------------------------- projection

def test_ground_point_lands_on_the_pixel_given_by_the_pinhole_formula():
    ego_pose = (10.0, 4.0, 0.0)
    # 20 m ahead of the camera (mount 0.5 m ahead of the ego centre) and 2 m to the right
    point = np.array([[10.0 + 0.5 + 20.0, 4.0 + 2.0, 0.0]])
    f = 100.0 / math.tan(math.radians(30.0))
    th = math.radians(6.0)
    depth = math.cos(th) * 20.0 + math.sin(th) * 1.4
    u = 99.5 + f * 2.0 / depth
    v = 32.5 + f * (-math.sin(th) * 20.0 + math.cos(th) * 1.4) / depth
    pixels, z = project(point, ego_pose, SPEC)
    assert z[0] == pytest.approx(depth)
    assert pixels[0] == pytest.approx([u, v], abs=1e-9)
    assert u > 99.5 and v > horizon_row(SPEC)  # right of centre, below the horizon
    assert intrinsics(SPEC)[0, 0] == pytest.approx(f) == focal_px(SPEC)


def test_right_of_travel_is_right_in_the_image_whatever_the_heading():
    # ego facing +y: the right of travel is -x (highway-env's y points right of travel)
    ego_pose = (0.0, 0.0, math.pi / 2)
    right, left = project(np.array([[-3.0, 20.5, 0.0], [3.0, 20.5, 0.0]]), ego_pose, SPEC)[0]
    assert right[0] > 99.5 + 10 and left[0] < 99.5 - 10
    assert right[1] == pytest.approx(left[1])
    # a point high above the road far ahead is above the horizon; a point behind has no pixel
    high, behind = project(np.array([[0.0, 200.0, 10.0], [0.0, -20.0, 0.0]]), ego_pose, SPEC)[0]
    assert high[1] < horizon_row(SPEC)
    assert np.isnan(behind).all()


def test_ground_to_pixel_and_pixel_to_ground_are_inverse_and_match_project():
    ego_xy = np.array([[12.0, -1.5], [30.0, 3.0], [8.0, 0.0]])
    offset = (0.0, 0.4, 0.05)
    px = ground_to_pixel(ego_xy, SPEC, offset)
    assert np.allclose(pixel_to_ground(px, SPEC, offset), ego_xy, atol=1e-9)
    # same as project() with the ego at the origin
    world = np.column_stack([ego_xy, np.zeros(3)])
    assert np.allclose(project(world, (0.0, 0.0, 0.0), SPEC, offset)[0], px)
    # a pixel above the horizon sees no ground
    assert np.isnan(pixel_to_ground(np.array([[100.0, 0.0]]), SPEC)).all()


def test_horizon_row_follows_the_pitch():
    assert horizon_row(SPEC) == pytest.approx(32.5 - focal_px(SPEC) * math.tan(math.radians(6.0)))
    assert horizon_row(SPEC.replace(pitch_deg=0.0)) == pytest.approx(32.5)


def test_vehicle_ahead_is_centred_and_the_farther_one_is_smaller_and_higher():
    boxes = {}
    for gap_m in (20.0, 40.0):
        road = straight_road(lanes=3)
        ego = add_ego(road, (100.0, 4.0))
        cam = Camera(SPEC.replace(max_distance_m=200.0))
        without = cam.render(road, ego)
        # gap measured from the camera to the vehicle centre
        road.vehicles.append(Vehicle(road, np.array([100.0 + 0.5 + gap_m, 4.0]), 0.0, 20.0))
        with_car = cam.render(road, ego)
        rows, cols = np.nonzero((with_car != without).any(axis=2))
        assert len(rows) > 0
        boxes[gap_m] = (rows.min(), rows.max(), cols.min(), cols.max())
    for gap_m, (r0, r1, c0, c1) in boxes.items():
        assert abs((c0 + c1) / 2 - 99.5) <= 1.0, (gap_m, c0, c1)
    near, far = boxes[20.0], boxes[40.0]
    assert far[3] - far[2] < near[3] - near[2]          # narrower
    assert far[1] - far[0] < near[1] - near[0]          # shorter
    assert far[1] < near[1]                              # its bottom edge is higher
    # the near car is about as wide as its 2 m width projects at 20 m (rear face at 17.5 m)
    expected_px = focal_px(SPEC) * 2.0 / (math.cos(math.radians(6)) * 17.5 + math.sin(math.radians(6)) * 1.4)
    assert abs((near[3] - near[2] + 1) - expected_px) <= 2.5


def test_nearer_box_hides_the_farther_one():
    road = straight_road(lanes=3)
    ego = add_ego(road, (100.0, 4.0))
    cam = Camera(SPEC)
    road.vehicles.append(Vehicle(road, np.array([130.0, 4.0]), 0.0, 20.0))
    only_far = cam.render(road, ego)
    road.vehicles.append(Vehicle(road, np.array([118.0, 4.0]), 0.0, 20.0))
    both = cam.render(road, ego)
    road.vehicles.pop()
    road.vehicles.insert(1, Vehicle(road, np.array([118.0, 4.0]), 0.0, 20.0))  # other list order
    assert np.array_equal(cam.render(road, ego), both)
    assert not np.array_equal(only_far, both)
    # the centre column at the far car's rows now shows the near car's colours
    rows = np.nonzero((only_far[:, 99] != cam.render(straight_road(), ego)[:, 99]).any(axis=1))[0]
    assert rows.size and not np.array_equal(both[rows, 99], only_far[rows, 99])


def test_a_car_beside_the_camera_is_clipped_not_smeared():
    # a car alongside, its rear 0.5 m behind the camera: it must not wrap around the image
    road = straight_road(lanes=3)
    ego = add_ego(road, (100.0, 4.0))
    cam = Camera(SPEC.replace(fov_deg=100.0))
    base = cam.render(road, ego)
    road.vehicles.append(Vehicle(road, np.array([102.5, 7.0]), 0.0, 20.0))
    frame = cam.render(road, ego)
    changed = (frame != base).any(axis=2)
    cols = np.nonzero(changed.any(axis=0))[0]
    assert cols.size and cols.min() > 99.5   # only on the right half: the car is to the right


def test_obstacles_are_drawn_as_boxes():
    road = straight_road(lanes=3)
    ego = add_ego(road, (100.0, 4.0))
    cam = Camera(SPEC)
    base = cam.render(road, ego)
    road.objects.append(Obstacle(road, np.array([125.0, 4.0])))
    assert (cam.render(road, ego) != base).any(axis=2).sum() > 20


# ---------------------------------------------------------------- frames

ALL_SPECS = [
    CameraSpec(),
    CameraSpec(width_px=128, height_px=64, grayscale=True),
    CameraSpec(kind="bev"),
    CameraSpec(kind="bev", width_px=128, height_px=64, grayscale=True),
]


def _stock_roads():
    import gymnasium as gym
    import highway_env  # noqa: F401

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("highway-v0", "merge-v0", "roundabout-v0", "racetrack-v0"):
            env = gym.make(name)
            env.reset(seed=0)
            out.append((name, env.unwrapped.road, env.unwrapped.vehicle))
            env.close()
    return out


@pytest.fixture(scope="module")
def stock_roads():
    return _stock_roads()


def _assert_not_blank(frame: np.ndarray, spec: CameraSpec, what: str) -> None:
    assert frame.dtype == np.uint8 and frame.shape == spec.shape, what
    flat = frame.reshape(-1, frame.shape[2])
    assert len(np.unique(flat, axis=0)) >= 3, f"{what}: fewer than 3 colours"
    assert frame.max() >= 60, f"{what}: black frame"


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: f"{s.kind}-{s.width_px}-{'gray' if s.grayscale else 'rgb'}")
def test_frames_are_never_blank_on_straight_curved_and_stock_roads(spec, stock_roads):
    cam = Camera(spec)
    straight = straight_road()
    ego_s = add_ego(straight, (50.0, 4.0))
    ring = ring_road()
    lane = ring.network.get_lane(("a", "b", 0))
    ego_r = add_ego(ring, tuple(lane.position(30.0, 0.0)), lane.heading_at(30.0))
    cases = [("straight", straight, ego_s), ("ring", ring, ego_r), *stock_roads]
    for name, road, ego in cases:
        for palette in ("day", "night"):
            _assert_not_blank(cam.render(road, ego, palette=palette), spec, f"{name}/{palette}")


def test_frame_changes_when_the_ego_moves(stock_roads):
    for spec in ALL_SPECS:
        cam = Camera(spec)
        road = straight_road()
        ego = add_ego(road, (50.0, 4.0))
        before = cam.render(road, ego)
        ego.position = ego.position + np.array([2.0, 0.7])
        after = cam.render(road, ego)
        assert not np.array_equal(before, after), spec.kind


def test_pose_offset_renders_as_if_the_ego_had_moved():
    cam = Camera(SPEC)
    road = straight_road()
    road.vehicles.append(Vehicle(road, np.array([80.0, 8.0]), 0.0, 20.0))
    ego = add_ego(road, (50.0, 4.0), 0.02)
    shifted = cam.render(road, ego, pose_offset=(1.0, 0.8, 0.05))
    plain = cam.render(road, ego)
    c, s = math.cos(0.02), math.sin(0.02)
    ego.position = np.array([50.0 + c * 1.0 - s * 0.8, 4.0 + s * 1.0 + c * 0.8])
    ego.heading = 0.07
    assert np.array_equal(shifted, cam.render(road, ego))
    assert not np.array_equal(shifted, plain)


def test_ego_lane_markings_are_symmetric_and_where_the_pinhole_model_puts_them():
    # one 4 m lane: both sides are continuous lines (highway-env CONTINUOUS_LINE)
    road = straight_road(lanes=1)
    ego = add_ego(road, (100.0, 0.0))
    cam = Camera(SPEC)
    frame = cam.render(road, ego)
    marking = np.all(frame == PALETTES["day"]["marking"], axis=2)
    for row in (50, 58, 64):
        cols = np.nonzero(marking[row])[0]
        left, right = cols[cols < 99.5], cols[cols > 99.5]
        assert left.size and right.size, row
        lc, rc = left.mean(), right.mean()
        assert abs((lc + rc) / 2 - 99.5) <= 0.6, (row, lc, rc)
        # the same row sees the ground at distance x; the boundaries are at y = -+2 m
        x_m = pixel_to_ground(np.array([[99.5, row]]), SPEC)[0, 0]
        expect = ground_to_pixel(np.array([[x_m, -2.0], [x_m, 2.0]]), SPEC)[:, 0]
        assert lc == pytest.approx(expect[0], abs=1.5) and rc == pytest.approx(expect[1], abs=1.5)


def test_bev_draws_striped_and_continuous_lines_as_highway_env_defines_them():
    # 3 lanes: lane 0 left edge continuous (y = -2), striped between lanes (y = 2, 6), right edge continuous
    road = straight_road(lanes=3)
    ego = add_ego(road, (300.0, 4.0))
    spec = CameraSpec(kind="bev", width_px=120, height_px=200, bev_ahead_m=40.0, bev_behind_m=10.0)
    frame = Camera(spec).render(road, ego)
    marking = np.all(frame == PALETTES["day"]["marking"], axis=2)
    px_per_m = 200 / 50.0
    u = lambda y_m: int(round(59.5 + (y_m - 4.0) * px_per_m))  # noqa: E731
    rows = slice(0, 120)   # ahead of the ego, away from its box
    continuous = marking[rows, u(-2.0)].mean()
    striped = marking[rows, u(2.0)].mean()
    lane_centre = marking[rows, u(0.0)].mean()
    assert continuous > 0.95
    assert 0.5 < striped < 0.85          # 3 m dashes every 4.33 m
    assert lane_centre == 0.0


def test_bev_keeps_the_ego_fixed_and_heading_up():
    spec = CameraSpec(kind="bev", width_px=100, height_px=100)
    cam = Camera(spec)
    ego_colour = PALETTES["day"]["ego"]
    masks = []
    for heading in (0.0, 0.6, -1.2):
        road = ring_road()
        ego = add_ego(road, (10.0, 70.0), heading)
        frame = cam.render(road, ego)
        masks.append(np.all(frame == ego_colour, axis=2))
    assert np.array_equal(masks[0], masks[1]) and np.array_equal(masks[0], masks[2])
    rows, cols = np.nonzero(masks[0])
    assert rows.max() - rows.min() > cols.max() - cols.min()   # long axis vertical
    assert abs((cols.min() + cols.max()) / 2 - 49.5) <= 0.5


def test_gray_frame_is_the_luma_of_the_rgb_frame():
    road = straight_road()
    ego = add_ego(road, (50.0, 4.0))
    rgb = Camera(SPEC).render(road, ego)
    gray = Camera(SPEC.replace(grayscale=True)).render(road, ego)
    assert gray.shape == (66, 200, 1)
    luma = rgb.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert np.mean(np.abs(luma - gray[:, :, 0])) < 2.0


def test_night_is_darker_than_day():
    road = straight_road()
    ego = add_ego(road, (50.0, 4.0))
    cam = Camera(SPEC)
    assert cam.render(road, ego, palette="night").mean() < 0.5 * cam.render(road, ego, palette="day").mean()
    with pytest.raises(ConfigError, match="noon"):
        cam.render(road, ego, palette="noon")


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("changes, key", [
    ({"width_px": 0}, "width_px"),
    ({"height_px": -3}, "height_px"),
    ({"width_px": 12.5}, "width_px"),
    ({"fov_deg": 10.0}, "fov_deg"),
    ({"fov_deg": 175.0}, "fov_deg"),
    ({"pitch_deg": 25.0}, "pitch_deg"),     # horizon above the top row
    ({"pitch_deg": -20.0}, "pitch_deg"),    # horizon below the bottom row
    ({"kind": "fisheye"}, "kind"),
    ({"max_distance_m": 0.0}, "max_distance_m"),
    ({"height_m": -1.0}, "height_m"),
    ({"grayscale": "yes"}, "grayscale"),
])
def test_invalid_specs_raise_config_error_naming_the_key(changes, key):
    with pytest.raises(ConfigError, match=key):
        CameraSpec(**changes)


def test_from_dict_rejects_unknown_keys_and_names_the_source():
    with pytest.raises(ConfigError, match="envs/x.toml.*'fov'.*fov_deg"):
        CameraSpec.from_dict({"fov": 60}, source="envs/x.toml: cameras.front")
    assert CameraSpec.from_dict({"kind": "bev", "width_px": 64}).width_px == 64


def test_near_plane_clipping_matches_a_full_polygon_clip():
    """Quads cut by the near plane in every way (1, 2 or 3 corners behind) fill the same
    pixels as a full Sutherland-Hodgman clip of each quad."""
    import cv2

    cam = Camera(SPEC.replace(fov_deg=100.0))
    rng = np.random.default_rng(0)
    seen_counts = set()
    for _ in range(400):
        # a random planar convex quad (a parallelogram) around the camera, in camera coordinates
        centre = rng.uniform([-3.0, -1.5, -1.0], [3.0, 1.5, 2.0])
        u, v = rng.normal(size=3), rng.normal(size=3)
        corners = centre + np.array([u + v, u - v, -u - v, -u + v]) * rng.uniform(0.3, 2.0)
        x, y, z = corners[:, 0][None], corners[:, 1][None], corners[:, 2][None]
        inside = z >= cam.spec.near_m
        if inside.all() or not inside.any():
            continue
        seen_counts.add(int(inside.sum()))
        polys, clipped = cam._project_polys(x + 1j * y, z.copy())
        fast = np.zeros((66, 200), np.uint8)
        cv2.fillPoly(fast, polys, 255, cv2.LINE_8, 4)
        if clipped:
            cv2.fillPoly(fast, list(clipped.values()), 255, cv2.LINE_8, 4)
        full = np.zeros((66, 200), np.uint8)
        cv2.fillPoly(full, cam._clip(x, y, z, cam.spec.near_m), 255, cv2.LINE_8, 4)
        differ = np.count_nonzero(fast != full)
        assert differ <= 2, differ   # fixed-point rounding of the cut points at most
    assert seen_counts == {1, 2, 3}

"""The fast traffic core against stock highway-env 1.12.1: same trajectories and crashes,
caches that follow vehicles being added and removed, and a reversible switch."""

from __future__ import annotations

import warnings

import gymnasium as gym
import highway_env  # noqa: F401
import numpy as np
import pytest
from highway_env.road.regulation import RegulatedRoad
from highway_env.road.road import Road
from highway_env.vehicle.behavior import IDMVehicle, LinearVehicle
from highway_env.vehicle.objects import Obstacle

from e2e_drive.sim import fast_core
from e2e_drive.sim.equivalence import compare_episode, run_trace

warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture(autouse=True)
def _stock_after_each_test():
    yield
    fast_core.accelerate(False)


def _make(env_id: str, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(env_id, disable_env_checker=True, config=config or None).unwrapped


def _assert_equal(r):
    assert r.ok, f"{r.env_id} seed {r.seed}: {r.problems}"
    assert r.max_position_error_m <= 1e-6 and r.max_speed_error_mps <= 1e-6


# ----------------------------------------------------------------------------------------
# Side by side with stock highway-env
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env_id, steps",
    [("highway-v0", 3), ("merge-v0", 10), ("roundabout-v0", 8), ("racetrack-v0", 8)],
)
@pytest.mark.parametrize("mode", ["idle", "mixed"])
def test_same_trajectories_as_stock(env_id, steps, mode):
    for seed in (0, 1):
        r = compare_episode(env_id, seed, steps, mode=mode)
        _assert_equal(r)
        assert r.steps == steps


def test_crashes_happen_at_the_same_step():
    # An ego that keeps accelerating drives into traffic; the episode is continued past the
    # ego's crash so that following vehicles pile into it.
    for env_id, seed, steps, config in (
        ("highway-v0", 2, 7, {"vehicles_count": 20}),  # the ego rear-ends a car at step 5
        ("merge-v0", 0, 12, None),
    ):
        r = compare_episode(env_id, seed, steps, config=config, mode="faster")
        _assert_equal(r)
        assert r.crash_steps_stock == r.crash_steps_fast
        assert r.crashes >= 2, f"{env_id}: expected crashes, got {r.crash_steps_stock}"


@pytest.mark.parametrize("core", ["attach", "accelerate"])
def test_spawned_and_removed_vehicles(core):
    # intersection-v0 spawns vehicles every step and removes those that left; its road is a
    # RegulatedRoad whose own step() ends with super().step(), which reaches the fast one.
    r = compare_episode("intersection-v0", 1, 12, mode="idle", core=core)
    _assert_equal(r)
    lo, hi = r.vehicle_count_range
    assert hi > lo, "the scenario should add vehicles during the episode"


def _add_and_remove(env, t):
    road = env.road
    if t == 1:
        ego = env.vehicle
        lane_index = ego.lane_index
        lane = road.network.get_lane(lane_index)
        s = lane.local_coordinates(ego.position)[0]
        side = road.network.side_lanes(lane_index)[0]
        v = IDMVehicle.make_on_lane(road, side, s + 15, speed=18)
        road.vehicles.append(v)  # plain list append, as users do
        road.vehicles.insert(3, IDMVehicle.make_on_lane(road, lane_index, s + 40, speed=15))
    if t == 3:
        del road.vehicles[5]
        road.objects.append(Obstacle(road, road.vehicles[-1].position + np.array([60.0, 0.0])))


@pytest.mark.parametrize("core", ["attach", "accelerate"])
def test_vehicles_added_and_removed_mid_episode(core):
    r = compare_episode(
        "highway-v0", 2, 6, config={"vehicles_count": 20}, mode="idle", hook=_add_and_remove,
        core=core,
    )
    _assert_equal(r)
    assert r.vehicle_count_range == (21, 23)  # 21, +2 at step 1, -1 at step 3


def _mix_vehicle_classes(env, t):
    # Every third vehicle becomes a LinearVehicle (its own act(), not vectorised), so that
    # fast and stock-path vehicles alternate in the list and list order must be kept.
    if t == 0:
        road = env.road
        for k in range(1, len(road.vehicles), 3):
            v = LinearVehicle.create_from(road.vehicles[k])
            road.vehicles[k] = v


def test_mixed_vehicle_classes_keep_list_order():
    r = compare_episode(
        "highway-v0", 0, 6, config={"vehicles_count": 25}, mode="idle",
        hook=_mix_vehicle_classes,
    )
    _assert_equal(r)


class _CappedIDM(IDMVehicle):
    """A vehicle class of its own (like the ability suite's scripted vehicles): its act reads its
    neighbours through IDMVehicle.act, then edits its action."""

    def act(self, action=None):
        super().act(action)
        self.action["acceleration"] = min(self.action["acceleration"], 0.5)


class _Nudger(IDMVehicle):
    """An act that moves the next vehicle in the list: the fast core must see it and re-project."""

    def act(self, action=None):
        super().act(action)
        vehicles = self.road.vehicles
        k = vehicles.index(self)
        if k + 1 < len(vehicles):
            vehicles[k + 1].position = vehicles[k + 1].position + np.array([0.7, 0.3])


class _Spawner(IDMVehicle):
    """An act that adds a vehicle to the list once: the rest of the loop must follow the live list."""

    spawned = False

    def act(self, action=None):
        super().act(action)
        if not self.spawned:
            self.spawned = True
            other = IDMVehicle.create_from(self)
            other.position = self.position + np.array([25.0, 0.0])
            self.road.vehicles.append(other)


def _own_act_classes(env, t):
    if t == 0:
        road = env.road
        for k in range(1, len(road.vehicles)):
            cls = {1: _CappedIDM, 2: _CappedIDM, 3: _Nudger, 6: _Spawner}.get(k % 7)
            if cls is not None:
                road.vehicles[k] = cls.create_from(road.vehicles[k])


@pytest.mark.parametrize("core", ["attach", "accelerate"])
def test_vehicle_classes_with_an_act_of_their_own_keep_the_fast_path_and_stock_results(core):
    r = compare_episode("highway-v0", 4, 8, config={"vehicles_count": 25}, mode="idle", hook=_own_act_classes,
                        core=core)
    _assert_equal(r)
    assert r.vehicle_count_range[1] > r.vehicle_count_range[0]  # the spawners added vehicles


# ----------------------------------------------------------------------------------------
# The cached queries, checked directly against highway-env's own methods
# ----------------------------------------------------------------------------------------
def _all_lane_indexes(net):
    return [(f, t, i) for f, d in net.graph.items() for t, ls in d.items() for i in range(len(ls))]


@pytest.mark.parametrize("env_id", ["highway-v0", "merge-v0", "roundabout-v0"])
@pytest.mark.parametrize("connected", [False, True])
def test_neighbour_queries_match_stock(env_id, connected):
    env = _make(env_id, neighbour_vehicles_connected_lanes=connected, vehicles_count=15)
    env.reset(seed=3)
    for _ in range(20):
        env.road.act()
        env.road.step(1 / 15)
    road = env.road
    # exact ties: two more vehicles at exactly the same place as existing ones
    for k in (1, 2):
        twin = IDMVehicle(road, road.vehicles[k].position.copy(), road.vehicles[k].heading, 20)
        road.vehicles.insert(k + 1, twin)
    outsider = IDMVehicle(road, road.vehicles[0].position + np.array([3.0, 0.0]), 0, 20)
    frame = fast_core._Frame(road)
    lanes = _all_lane_indexes(road.network)
    checked = 0
    for v in [*road.vehicles, outsider]:
        for li in [None, *lanes]:
            expected = fast_core._STOCK_NEIGHBOURS(road, v, li)
            got = frame.neighbours(v, li or v.lane_index)
            assert got[0] is expected[0] and got[1] is expected[1], (v, li)
            checked += expected[0] is not None
    assert checked > 10


def test_close_objects_to_matches_stock():
    env = _make("merge-v0")  # has an Obstacle in road.objects
    env.reset(seed=0)
    road = env.road
    fast_core.attach(road)
    for _ in range(10):
        road.act()
        road.step(1 / 15)
    assert road.objects
    for v in road.vehicles:
        for kw in (
            {},
            {"count": 3},
            {"see_behind": False},
            {"sort": False, "vehicles_only": True},
            {"count": 2, "see_behind": False, "vehicles_only": False},
        ):
            assert road.close_objects_to(v, 200, **kw) == fast_core._STOCK_CLOSE_OBJECTS(
                road, v, 200, **kw
            )


def test_collision_broad_phase_keeps_every_pair_stock_would_test():
    rng = np.random.default_rng(0)
    env = _make("highway-v0", vehicles_count=5)
    env.reset(seed=0)
    road = env.road
    dt = 1 / 15
    for _ in range(30):
        n = int(rng.integers(2, 40))
        ents = []
        for _ in range(n):
            v = IDMVehicle(road, rng.uniform([0, -4], [60, 16]), rng.uniform(-3, 3), 0)
            v.speed = float(rng.uniform(-40, 40))
            ents.append(v)
        n_veh = n - int(rng.integers(0, 3))
        pair_list = fast_core._collision_pairs(ents, n_veh, dt)
        assert pair_list == sorted(set(pair_list))  # highway-env's loop order, no repeats
        pairs = set(pair_list)
        for i in range(n_veh):
            for j in range(i + 1, n):
                a, b = ents[i], ents[j]
                passes = np.linalg.norm(b.position - a.position) <= (
                    a.diagonal + b.diagonal
                ) / 2 + a.speed * dt
                if passes:
                    assert (i, j) in pairs



def test_collision_narrow_phase_drops_only_pairs_stock_leaves_alone():
    """A pair is skipped only when highway-env's own rectangle test says neither intersecting nor will
    intersect (then handle_collisions does nothing); close, touching and overlapping boxes are all kept."""
    rng = np.random.default_rng(1)
    env = _make("highway-v0", vehicles_count=5)
    env.reset(seed=0)
    dt = 1 / 15
    dropped = kept_hits = 0
    for _ in range(40):
        n = int(rng.integers(2, 12))
        ents = []
        for _ in range(n):  # crowded: many near-touching, touching and overlapping pairs
            v = IDMVehicle(env.road, rng.uniform([0, -3], [14, 6]), rng.uniform(-0.6, 0.6), 0)
            v.speed = float(rng.uniform(-30, 30))
            ents.append(v)
        ents.append(Obstacle(env.road, rng.uniform([0, -3], [14, 6])))
        pairs = fast_core._collision_pairs(ents, n, dt)
        kept = set(fast_core._separated_pairs_dropped(ents, pairs, dt))
        assert kept <= set(pairs) and sorted(kept) == [p for p in pairs if p in kept]  # stock order
        for i, j in pairs:
            intersecting, will_intersect, _ = ents[i]._is_colliding(ents[j], dt)
            if (i, j) not in kept:
                dropped += 1
                assert not intersecting and not will_intersect, (i, j)
            elif intersecting or will_intersect:
                kept_hits += 1
    assert dropped > 50 and kept_hits > 50  # both sides of the test were exercised


# ----------------------------------------------------------------------------------------
# Switching the core on and off
# ----------------------------------------------------------------------------------------
def _road_methods():
    return {name: getattr(Road, name) for name in fast_core._STOCK_METHODS}


def test_accelerate_round_trip():
    stock = _road_methods()
    assert all(f.__module__ == "highway_env.road.road" for f in stock.values())
    fast_core.accelerate()
    fast_core.accelerate()  # idempotent
    assert fast_core.is_accelerated()
    assert all(f.__module__ == fast_core.__name__ for f in _road_methods().values())
    env = _make("highway-v0", vehicles_count=10)
    env.reset(seed=0)
    env.step(1)
    assert env.road.act.__func__ is fast_core._fast_act
    fast_core.accelerate(False)
    fast_core.accelerate(False)
    assert not fast_core.is_accelerated()
    assert _road_methods() == stock
    assert env.road.act.__func__ is stock["act"]


def test_attach_is_idempotent_and_detach_restores():
    env = _make("highway-v0", vehicles_count=10)
    env.reset(seed=0)
    road = env.road
    assert fast_core.attach(road) is road
    cls = type(road)
    fast_core.attach(road)
    assert type(road) is cls and fast_core.is_attached(road)
    assert isinstance(road, Road) and cls.__mro__[-3:] == (fast_core._FastRoad, Road, object)
    env.step(1)
    fast_core.detach(road)
    assert type(road) is Road and not fast_core.is_attached(road)
    env.step(1)
    # a road subclass keeps its own overrides (RegulatedRoad.step enforces road rules),
    # which reach the fast methods through super()
    reg = RegulatedRoad(network=road.network)
    fast_core.attach(reg)
    assert isinstance(reg, RegulatedRoad) and type(reg).step is RegulatedRoad.step
    assert type(reg).__mro__.index(fast_core._FastRoad) < type(reg).__mro__.index(Road)
    fast_core.detach(reg)
    assert type(reg) is RegulatedRoad
    with pytest.raises(TypeError):
        fast_core.attach(object())


def test_public_vehicle_attributes_keep_working():
    fast_core.accelerate()
    env = _make("highway-v0", vehicles_count=15)
    env.reset(seed=1)
    road = env.road
    arrays = [v.position for v in road.vehicles]
    for _ in range(3):
        env.step(1)
    assert [v.position for v in road.vehicles] == arrays  # updated in place, like stock
    for v in road.vehicles:
        assert isinstance(v.position, np.ndarray) and v.position.dtype == np.float64
        assert v.position.shape == (2,) and np.all(np.isfinite(v.position))
        assert isinstance(v.speed, float) and isinstance(v.heading, float)
        assert isinstance(v.crashed, bool)
        assert v.lane_index == road.network.get_closest_lane_index(v.position, v.heading)
        assert v.lane is road.network.get_lane(v.lane_index)
    # neighbour queries outside act() are answered by the stock search
    ego = env.vehicle
    assert road.neighbour_vehicles(ego) == fast_core._STOCK_NEIGHBOURS(road, ego)


def test_stock_and_fast_traces_reproducible():
    a = run_trace("roundabout-v0", 4, 5, "attach", mode="mixed")
    b = run_trace("roundabout-v0", 4, 5, "accelerate", mode="mixed")
    assert len(a.positions) == len(b.positions) == 6
    for pa, pb in zip(a.positions, b.positions, strict=True):
        assert np.array_equal(pa, pb)


def test_attached_road_survives_deepcopy_and_pickle():
    import copy
    import pickle

    env = _make("highway-v0", vehicles_count=10)
    env.reset(seed=5)
    fast_core.attach(env.road)
    twin = copy.deepcopy(env)  # highway-env deep-copies envs (e.g. simplify())
    assert fast_core.is_attached(twin.road) and twin.road is not env.road
    assert all(v.road is twin.road for v in twin.road.vehicles)
    for e in (env, twin):
        for _ in range(10):
            e.road.act()
            e.road.step(1 / 15)
    for a, b in zip(env.road.vehicles, twin.road.vehicles, strict=True):
        assert np.array_equal(a.position, b.position) and a.speed == b.speed
    clone = pickle.loads(pickle.dumps(env.road))
    assert fast_core.is_attached(clone) and type(clone) is type(env.road)
    assert len(clone.vehicles) == len(env.road.vehicles)
    fast_core.detach(clone)
    assert type(clone) is Road


@pytest.mark.parametrize(
    "env_id, observation",
    [
        ("highway-v0", None),
        ("merge-v0", {"type": "Kinematics", "normalize": False, "include_obstacles": False}),
        (
            "highway-v0",
            {
                "type": "Kinematics",
                "absolute": True,
                "order": "shuffled",
                "see_behind": True,
                "vehicles_count": 8,
                "features": ["presence", "x", "y", "vx", "vy", "cos_h", "sin_h", "heading"],
            },
        ),
    ],
)
def test_kinematics_observation_matches_stock(env_id, observation):
    from highway_env.envs.common.observation import KinematicObservation

    config = {"observation": observation} if observation else {}
    if env_id == "highway-v0":
        config["vehicles_count"] = 20
    env = _make(env_id, **config)
    env.reset(seed=1)
    checked = 0
    for _ in range(4):
        env.step(1)
        obs_type = env.observation_type
        assert isinstance(obs_type, KinematicObservation)
        state = env.np_random.bit_generator.state  # "shuffled" draws from it
        expected = fast_core._STOCK_KINEMATICS_OBSERVE(obs_type)
        env.np_random.bit_generator.state = state
        got = fast_core._fast_kinematics_observe(obs_type)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected)
        checked += 1
    fast_core.accelerate()
    assert KinematicObservation.observe is fast_core._fast_kinematics_observe
    fast_core.accelerate(False)
    assert KinematicObservation.observe is fast_core._STOCK_KINEMATICS_OBSERVE
    assert checked == 4


def test_road_rules_predict_each_vehicle_once_and_decide_as_stock(monkeypatch):
    """RegulatedRoad.enforce_road_rules with one prediction per vehicle gives stock's yields and trajectories
    (e2e_drive's ego is a plain Vehicle, whose prediction deep-copies it: the expensive case)."""
    cfg = {"vehicles_count": 10, "spawn_probability": 0.8, "duration_s": 25.0,
           "cameras": {"dashcam": {"kind": "dashcam", "width_px": 40, "height_px": 20}}}
    traces = []
    fast_fn = fast_core._fast_enforce_road_rules
    for fast in (True, False):
        monkeypatch.setattr(fast_core, "_fast_enforce_road_rules", fast_fn if fast else fast_core._STOCK_ENFORCE)
        monkeypatch.setattr(fast_core, "_fast_classes", {})
        env = gym.make("e2e_drive/Intersection-v0", config=cfg)
        env.reset(seed=0)
        assert (type(env.unwrapped.road).enforce_road_rules is fast_fn) == fast
        trace, yielded = [], False
        for _ in range(20):
            env.step(np.array([-0.2, 0.0], np.float32))
            vs = env.unwrapped.road.vehicles
            yielded |= any(getattr(v, "is_yielding", False) for v in vs)
            trace.append([(*v.position, v.speed, v.heading, getattr(v, "target_speed", 0),
                           getattr(v, "is_yielding", False)) for v in vs])
        env.close()
        assert yielded  # the rules made a vehicle give way: the decisions were exercised
        traces.append(trace)
    assert traces[0] == traces[1]  # bit for bit


@pytest.mark.parametrize("env_id", ["intersection-v0", "roundabout-v0", "racetrack-v0", "merge-v0"])
def test_lane_distances_of_all_lanes_at_once_equal_lane_by_lane(env_id):
    """LaneBatch (every lane of the network in one broadcast) gives the per-lane values bit for bit,
    so the closest lane (highway-env's get_closest_lane_index) is the same."""
    from e2e_drive.sim import _fast_lanes as fl

    env = _make(env_id)
    env.reset(seed=0)
    net = env.road.network
    indexes, lanes, batch = fast_core._lane_table(net)
    rng = np.random.default_rng(0)
    xy = np.array([v.position for v in env.road.vehicles] + list(rng.uniform(-150, 450, (60, 2))))
    positions = [p.copy() for p in xy]
    headings = [float(h) for h in rng.uniform(-4, 4, len(positions))]
    x, y, h = xy[:, 0].copy(), xy[:, 1].copy(), np.array(headings)
    one_by_one = np.array([fl.distance_with_heading(lane, x, y, h, positions, headings) for lane in lanes])
    assert np.array_equal(batch.distances(x, y, h, positions, headings), one_by_one)
    closest = fast_core._closest_lanes(net, positions, headings, x, y)
    assert [c[0] for c in closest] == [fast_core._STOCK_CLOSEST(net, p, hd) for p, hd in zip(positions, headings)]


@pytest.mark.parametrize("env_id", ["intersection-v0", "roundabout-v0", "racetrack-v0", "merge-v0"])
def test_single_closest_lane_queries_answer_as_stock(env_id):
    """The ego's (and every non-vectorised vehicle's) closest-lane query, served from the LaneBatch once the
    road is attached or highway-env accelerated, names the lane highway-env's own search names, ties included
    (points exactly between two lanes, on lane ends, headings far off the lane's)."""
    from highway_env.road.road import RoadNetwork

    env = _make(env_id)
    env.reset(seed=0)
    net = env.road.network
    rng = np.random.default_rng(3)
    lanes = [lane for to in net.graph.values() for ls in to.values() for lane in ls]
    points = [(p, h) for p, h in zip(rng.uniform(-150, 450, (150, 2)), rng.uniform(-4, 4, 150))]
    for lane in lanes:  # on the lanes, at their ends and between neighbours: where ties happen
        for s in (0.0, lane.length / 2, lane.length):
            points.append((lane.position(s, 0.0), lane.heading_at(s)))
            points.append((lane.position(s, lane.width_at(s) / 2), lane.heading_at(s) + 0.5))
    expected = [fast_core._STOCK_CLOSEST(net, p, h) for p, h in points]
    assert len(set(expected)) > 3  # the points reach many lanes
    xy = np.array([p for p, _ in points], dtype=float)
    many = fast_core._closest_lanes(net, [p for p, _ in points], [h for _, h in points], xy[:, 0], xy[:, 1])
    assert [c[0] for c in many] == expected  # the traffic's batched search too
    fast_core.attach(env.road)
    assert type(net).get_closest_lane_index is fast_core._fast_closest_lane_index
    assert [net.get_closest_lane_index(p, h) for p, h in points] == expected
    assert net.get_closest_lane_index(points[0][0]) == fast_core._STOCK_CLOSEST(net, points[0][0])  # no heading
    fast_core.detach(env.road)
    assert type(net) is RoadNetwork
    fast_core.accelerate()
    assert [RoadNetwork.get_closest_lane_index(net, p, h) for p, h in points] == expected
    fast_core.accelerate(False)
    assert RoadNetwork.get_closest_lane_index is fast_core._STOCK_CLOSEST and "__deepcopy__" not in vars(RoadNetwork)


def test_attached_network_copies_share_the_lane_batch_and_pickle():
    """A deep copy (highway-env copies a plain Vehicle with its road for every prediction) reuses the
    network's LaneBatch for its own lanes, and answers as the original; pickling keeps the fast class."""
    import copy
    import pickle

    env = _make("intersection-v0")
    env.reset(seed=0)
    fast_core.attach(env.road)
    net = env.road.network
    _, lanes, batch = fast_core._lane_table(net)
    twin = copy.deepcopy(env.road)
    indexes2, lanes2, batch2 = fast_core._lane_table(twin.network)
    assert batch2 is batch and all(a is not b for a, b in zip(lanes, lanes2, strict=True))
    assert lanes2[0] is twin.network.graph[next(iter(twin.network.graph))][indexes2[0][1]][0]
    p, h = np.array([3.0, -20.0]), 1.2
    assert twin.network.get_closest_lane_index(p, h) == fast_core._STOCK_CLOSEST(net, p, h)
    clone = pickle.loads(pickle.dumps(env.road))
    assert type(clone.network) is type(net) and clone.network.get_closest_lane_index(p, h) == net.get_closest_lane_index(p, h)

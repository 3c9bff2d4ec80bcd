"""The Gymnasium env: highway-env scenario + OpenCV cameras + continuous [acceleration, steering].

Observation (one layout, converted once here): a dict with one entry per camera name, a uint8
array of shape (height_px, width_px, channels) where channels = frame_stack x 3 (RGB) or
frame_stack x 1 (grayscale), oldest frame first; ``"speed"``, float32 shape (1,), ego speed
in m/s; and the satnav's navigation command: ``"command"``, an ``np.int64`` index into
:data:`e2e_drive.sim.route.COMMANDS` (follow_lane, keep_left, keep_right, take_exit, turn_left,
turn_right, go_straight), and ``"command_distance_m"``, float32 shape (1,), the distance to where
it applies (capped at 1000 m). Privileged ground truth goes in ``info`` only (see
:mod:`e2e_drive.sim.ground_truth`), the route's state in ``info["route"]``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from e2e_drive.actions import check_action
from e2e_drive.errors import ConfigError
from e2e_drive.scenarios.base import get_scenario, make_scenario, validate_env_config
from e2e_drive.scenarios.sensors import build_sensors, validate_sensors  # noqa: F401  (validate_sensors: API)
from e2e_drive.sensors import Camera
from e2e_drive.sensors.conditions import FrameDelay, episode_scene, miscalibrated
from e2e_drive.sensors.conditions import apply as apply_conditions
from e2e_drive.sim.ground_truth import ground_truth
from e2e_drive.sim.route import COMMANDS, MAX_COMMAND_DISTANCE_M

#: Highest ego speed the observation space admits (highway-env's Vehicle.MAX_SPEED) [m/s].
MAX_SPEED_MPS = 40.0


class DrivingEnv(gym.Env):
    """A camera driving env on a highway-env scenario. Build it with ``gym.make("e2e_drive/Highway-v0")``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(self, scenario: str = "highway", config: dict[str, Any] | None = None,
                 render_mode: str | None = None) -> None:
        #: The scenario's declaration (road, traffic, keys, end): e2e_drive.scenarios.
        self.declaration = get_scenario(scenario, source="DrivingEnv")
        env_id = self.declaration.env_id
        source = f"{env_id} config"
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"{env_id}: render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.scenario = scenario
        self.render_mode = render_mode
        self.config = validate_env_config(self.declaration, config, source)
        self.camera_specs, self.conditions = build_sensors(self.config, source)
        # The agent is told the nominal camera specs; a calibration error renders from a perturbed one.
        self.cameras = {name: Camera(miscalibrated(spec, self.conditions))
                        for name, spec in self.camera_specs.items()}
        self.metadata = dict(self.metadata, render_fps=self.config["policy_frequency_hz"])
        self.sim = make_scenario(self.declaration, self.config)
        self.substeps_per_action = self.config["simulation_frequency_hz"] // self.config["policy_frequency_hz"]
        #: Called after every simulator sub-step with this env (the evaluator records ground truth here).
        self.substep_callback: Callable[[DrivingEnv], None] | None = None

        stack = self.config["frame_stack"]
        spaces: dict[str, gym.Space] = {}
        for name, spec in self.camera_specs.items():
            channels = (1 if spec.grayscale else 3) * stack
            spaces[name] = gym.spaces.Box(0, 255, (spec.height_px, spec.width_px, channels), np.uint8)
        spaces["speed"] = gym.spaces.Box(-MAX_SPEED_MPS, MAX_SPEED_MPS, (1,), np.float32)
        spaces["command"] = gym.spaces.Discrete(len(COMMANDS))
        spaces["command_distance_m"] = gym.spaces.Box(0.0, MAX_COMMAND_DISTANCE_M, (1,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._stacks: dict[str, deque] = {}
        self._delays: dict[str, FrameDelay] = {}
        self._sensor_rng = np.random.default_rng(0)
        #: The episode's look (e2e_drive.sensors.looks.Scene), None for the plain look.
        self.scene: Any = None
        self._last_frames: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ highway-env compatibility
    @property
    def road(self) -> Any:
        """The highway-env Road (``road.vehicles``, ``road.network``), as in stock environments."""
        return self.sim.road

    @property
    def vehicle(self) -> Any:
        """The ego vehicle (highway-env kinematic vehicle)."""
        return self.sim.vehicle

    @property
    def time_s(self) -> float:
        return float(self.sim.time)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        if options:
            raise ConfigError(f"reset options are not supported (got keys {sorted(options)}); pass config to gym.make")
        super().reset(seed=seed)
        sim_seed = int(seed) if seed is not None else int(self.np_random.integers(2**31 - 1))
        self.sim.reset(seed=sim_seed)
        if self.config["traffic_core"] == "fast":
            from e2e_drive.sim.fast_core import attach

            attach(self.sim.road)
        self._sensor_rng = np.random.default_rng([sim_seed, 0x5E25])
        self.scene = episode_scene(self.conditions, sim_seed)
        self._stacks = {n: deque(maxlen=self.config["frame_stack"]) for n in self.cameras}
        self._delays = {n: FrameDelay(self.conditions.latency_steps) for n in self.cameras}
        obs = self._observe(first=True)
        return obs, self._info(event=None)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        a = check_action(action, who="env.step got", flatten=True, dtype=np.float64).action
        sim = self.sim
        dt = 1.0 / self.config["simulation_frequency_hz"]
        t0 = float(sim.time)
        sim.time += 1.0 / self.config["policy_frequency_hz"]
        for k in range(self.substeps_per_action):
            if k == 0:
                sim.action_type.act(a)
            sim.e2e_substep_time_s = t0 + k * dt  # events scripted now are stamped with this sub-step's time
            sim.scenario_step()
            sim.road.act()
            sim.road.step(dt)
            sim.steps += 1
            sim.e2e_route.update(sim.vehicle, dt)
            if self.substep_callback is not None:
                self.substep_callback(self)
        obs = self._observe()
        event = self._event()
        terminated = event in ("crashed", "offroad", "route_deviation", "route_end")
        truncated = event == "time_up"
        info = self._info(event)
        return obs, self._reward(info), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """What the agent sees: the newest frame of the first camera, as RGB (rgb_array mode)."""
        if self.render_mode != "rgb_array":
            return None
        name = next(iter(self.cameras))
        frame = self._last_frames[name]
        return np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame

    def close(self) -> None:
        self.sim.close()

    # ------------------------------------------------------------------ parts
    def ground_truth(self) -> dict[str, Any]:
        """Privileged ground truth now (the ``info`` of the contract)."""
        return ground_truth(self.sim.road, self.sim.vehicle, self.sim.time, self.sim.steps,
                            paths=bool(getattr(self.sim, "paths_in_info", False)))

    def render_camera(self, name: str, pose_offset: tuple[float, float, float] | None = None,
                      conditions: bool = True) -> np.ndarray:
        """Render camera ``name`` now, optionally from a pose shifted (dx_m, dy_m, dyaw_rad) from the ego.

        Used for recovery views; sensor conditions (except latency) apply unless ``conditions=False``.
        """
        if name not in self.cameras:
            raise ConfigError(f"unknown camera {name!r}; this env has {sorted(self.cameras)}")
        frame = self.cameras[name].render(self.sim.road, self.sim.vehicle, pose_offset=pose_offset,
                                          palette=self.conditions.palette, scene=self.scene)
        return apply_conditions(frame, self.conditions, self._sensor_rng) if conditions else frame

    def _observe(self, first: bool = False) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        for name in self.cameras:
            frame = self._delays[name].push(self.render_camera(name))
            self._last_frames[name] = frame
            stack = self._stacks[name]
            if first:
                stack.extend([frame] * (stack.maxlen or 1))
            else:
                stack.append(frame)
            obs[name] = np.concatenate(stack, axis=2) if len(stack) > 1 else frame.copy()
        obs["speed"] = np.array([np.clip(self.sim.vehicle.speed, -MAX_SPEED_MPS, MAX_SPEED_MPS)], np.float32)
        command, distance = self.sim.e2e_route.command()
        obs["command"] = np.int64(COMMANDS.index(command))
        obs["command_distance_m"] = np.array([distance], np.float32)
        return obs

    def _event(self) -> str | None:
        ego = self.sim.vehicle
        if ego.crashed:
            return "crashed"
        if self.config["offroad_terminal"] and not ego.on_road:
            return "offroad"
        route = self.sim.e2e_route
        if route.deviated:
            return "route_deviation"
        route_end = self.declaration.route_end
        if route.done or (route_end is not None and route_end(self.sim, self.config)):
            return "route_end"
        if self.sim.time >= self.config["duration_s"] - 1e-9:
            return "time_up"
        return None

    @staticmethod
    def _reward(info: dict[str, Any]) -> float:
        """A simple shaped reward for RL users: forward speed up to 30 m/s while on road, -1 on a crash.

        Read from the step's ground truth, which has already projected the ego on its lane.
        """
        forward = info["ego"]["speed_mps"] * np.cos(info["lane"]["heading_error_rad"])
        return float(np.clip(forward / 30.0, 0.0, 1.0) * info["on_road"] - 1.0 * info["crashed"])

    def _info(self, event: str | None) -> dict[str, Any]:
        info = self.ground_truth()
        info["event"] = event
        info["route"] = self.sim.e2e_route.state()
        info["scenario_events"] = [dict(e) for e in self.sim.e2e_events]
        return info


def make_env(scenario_file: str | None = None, overrides: dict[str, Any] | None = None,
             render_mode: str | None = None) -> gym.Env:
    """Build an env from a scenario file (envs/*.toml), or the built-in default highway when None.

    ``overrides`` are config keys applied on top of the file's (validated the same way).
    """
    import e2e_drive  # noqa: F401  (registers the ids)
    from e2e_drive.scenarios.files import load_scenario

    if scenario_file is None:
        env_id, config = "e2e_drive/Highway-v0", {}
    else:
        sf = load_scenario(scenario_file)
        env_id, config = sf.env_id, dict(sf.config)
    config.update(overrides or {})
    return gym.make(env_id, config=config, render_mode=render_mode)

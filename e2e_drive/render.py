"""Render what an agent sees into a browser-playable video (VP8 .webm) and PNG snapshots.

The episodes are driven by :func:`e2e_drive.agents.loop.drive_episode`; the frames are its observer.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np
from tqdm import tqdm

from e2e_drive.agents.base import AgentNeeds
from e2e_drive.errors import ConfigError

#: Frames narrower than this are scaled up (nearest neighbour) in the video so a person can see them [px].
MIN_VIDEO_WIDTH_PX = 600


@contextlib.contextmanager
def _quiet_stderr():
    """Silence FFmpeg's harmless 'tag VP80 is not supported' note (printed from C, below Python)."""
    fd = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def open_webm(path: str | Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """A VP8 .webm writer (plays in browsers); raises if OpenCV cannot write one."""
    with _quiet_stderr():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write VP8 video to {path}")
    return writer


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.ascontiguousarray(frame[:, :, -3:]), cv2.COLOR_RGB2BGR)


class _Coast:
    """The driver when none is given: coast straight ([0, 0])."""

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        return np.zeros(2, np.float32)


class _Clip:
    """Observer of :func:`e2e_drive.agents.loop.drive_episode` that writes one camera's frames
    (after every reset, and after every step that does not end the episode) to a video and snapshots."""

    def __init__(self, env: Any, camera: str, out: Path, steps: int, snapshots: int,
                 overlay: Callable[[np.ndarray, dict, dict], np.ndarray] | None) -> None:
        base = env.unwrapped
        self.camera, self.out, self.overlay = camera, out, overlay
        spec = base.camera_specs[camera]
        self.channels = 1 if spec.grayscale else 3
        scale = max(1, -(-MIN_VIDEO_WIDTH_PX // spec.width_px))
        self.size = (spec.width_px * scale, spec.height_px * scale)
        self.fps = base.config["policy_frequency_hz"]
        self.video_path = out / f"{camera}.webm"
        self.snap_at = set(np.linspace(0, steps - 1, max(1, snapshots)).astype(int).tolist()) if snapshots else set()
        self.pngs: list[str] = []
        self.frames = 0
        self.bar = tqdm(total=steps, desc=f"render {camera}", unit="frame")
        self.writer: cv2.VideoWriter | None = None

    def __enter__(self) -> "_Clip":
        self.writer = open_webm(self.video_path, self.fps, self.size)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.release()

    def on_reset(self, env: Any, obs: dict, info: dict) -> None:
        self.write(obs, info)

    def on_step(self, env: Any, obs: dict, reward: float, terminated: bool, truncated: bool, info: dict) -> None:
        if not (terminated or truncated):  # an ended episode's next frame is the next episode's first
            self.write(obs, info)

    def write(self, obs: dict, info: dict) -> None:
        frame = obs[self.camera][:, :, -self.channels:]
        if self.overlay is not None:
            frame = self.overlay(frame if self.channels == 3 else np.repeat(frame, 3, axis=2), obs, info)
        bgr = _to_bgr(frame)
        self.writer.write(cv2.resize(bgr, self.size, interpolation=cv2.INTER_NEAREST))
        if self.frames in self.snap_at:
            path = self.out / f"{self.camera}_{len(self.pngs):02d}.png"
            cv2.imwrite(str(path), bgr)
            self.pngs.append(str(path))
        self.frames += 1
        self.bar.update(1)


def render_clip(env: Any, camera: str, seconds: float, out_dir: str | Path, seed: int = 0,
                policy: Callable[[dict, dict], np.ndarray] | None = None, snapshots: int = 4,
                overlay: Callable[[np.ndarray, dict, dict], np.ndarray] | None = None,
                agent: Any = None) -> dict[str, Any]:
    """Drive ``env`` for ``seconds`` and record ``camera``.

    The driver is ``agent`` (reset at the start of every episode), else ``policy(obs, info)``,
    else coasting straight. When an episode ends before the clip does, the next one starts with
    seed ``seed + frames so far``. Writes ``<camera>.webm`` and ``<camera>_<k>.png`` snapshots into
    ``out_dir`` and returns their paths with the number of frames. ``overlay(frame_rgb, obs, info)``
    may draw on each frame.
    """
    from e2e_drive.agents.loop import drive_episode

    base = env.unwrapped
    if camera not in base.cameras:
        raise ConfigError(f"--camera {camera!r}: this scenario has cameras {sorted(base.cameras)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = max(1, int(round(seconds * base.config["policy_frequency_hz"])))
    if agent is None:
        agent = _Policy(policy) if policy is not None else _Coast()
    with _Clip(env, camera, out, steps, snapshots, overlay) as clip:
        while clip.frames < steps:
            # each action gives one frame (the step's, or the next episode's first); the last frame takes none
            drive_episode(env, agent, seed + clip.frames, [clip], max_steps=steps - clip.frames - 1)
    return {"video": str(clip.video_path), "snapshots": clip.pngs, "frames": clip.frames, "fps": clip.fps}


class _Policy:
    """A ``policy(obs, info) -> action`` function as a driver (it sees ``info``)."""

    needs = AgentNeeds(reads_ground_truth=True)

    def __init__(self, policy: Callable[[dict, dict], np.ndarray]) -> None:
        self.policy = policy

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, observation: dict, info: dict | None = None) -> np.ndarray:
        return self.policy(observation, info)


def with_declared_cameras(cameras: Mapping[str, Any], needs: Any, where: str) -> dict[str, Any]:
    """The scenario's camera tables plus the cameras an agent declares (``needs.cameras``) that it
    lacks; a declared camera the scenario has with another kind, size or colour is a ConfigError."""
    merged = {name: dict(table) for name, table in cameras.items()}
    for name, need in (needs.cameras or {}).items():
        table = merged.get(name)
        if table is None:
            merged[name] = need.table()
            continue
        difference = need.differs_from(table, f"{where} cameras.{name}")
        if difference is not None:
            raise ConfigError(f"the agent needs camera '{name}' as kind/width/height/grayscale {difference[0]}, "
                              f"{where} has {difference[1]}")
    return merged


def render_agent(env_file: str | None, agent_spec: str | None, out_dir: str | Path, *, camera: str | None = None,
                 seconds: float = 10.0, seed: int = 0) -> dict[str, Any]:
    """``e2e-drive render``: drive the scenario ``env_file`` (None: the built-in highway) with the
    agent ``agent_spec`` (None: coast straight) and record ``camera``.

    The agent's declared cameras are added to the scenario's (:func:`with_declared_cameras`), so it
    sees what it expects; the default camera is the agent's first declared one, else the
    scenario's first. An agent with ``draw_debug(frame)`` (the modular stack) draws on the frames.
    """
    from e2e_drive.env import make_env

    agent = overlay = None
    overrides: dict[str, Any] = {}
    if agent_spec is not None:
        from e2e_drive.agents.base import agent_needs
        from e2e_drive.agents.loading import load_agent

        agent = load_agent(agent_spec)
        needs = agent_needs(agent)
        if needs.cameras:
            overrides["cameras"] = with_declared_cameras(_scenario_cameras(env_file), needs,
                                                         f"scenario {env_file or 'highway (built in)'}")
            camera = camera or next(iter(needs.cameras))
        draw_debug = getattr(agent, "draw_debug", None)
        if draw_debug is not None:  # e.g. the modular stack draws what perception found and its plan
            overlay = lambda frame, obs, info: draw_debug(frame)  # noqa: E731
    env = make_env(env_file, overrides)
    try:
        return render_clip(env, camera or next(iter(env.unwrapped.cameras)), seconds, out_dir, seed=seed,
                           overlay=overlay, agent=agent)
    finally:
        env.close()


def _scenario_cameras(env_file: str | None) -> dict[str, Any]:
    from e2e_drive.config import DEFAULT_CAMERAS
    from e2e_drive.scenarios import load_scenario

    if env_file is None:
        return dict(DEFAULT_CAMERAS)
    return dict(load_scenario(env_file).config.get("cameras") or DEFAULT_CAMERAS)


# ============================================================================ the gallery
#: Cameras the gallery adds to each scenario: a dashcam larger than the agents' and a bird's-eye view.
GALLERY_CAMERAS: dict[str, dict[str, Any]] = {
    "gallery_dashcam": {"kind": "dashcam", "width_px": 400, "height_px": 132},
    "gallery_bev": {"kind": "bev", "width_px": 240, "height_px": 240, "bev_ahead_m": 60.0, "bev_behind_m": 20.0},
}
#: The gallery's default scenario files (every one found there when it runs) and driver.
GALLERY_ENV_DIR = "envs/abilities"
GALLERY_AGENT = "agents/expert.toml"


class _KeyMoment(Exception):
    """Raised by the gallery's observer once it has the key moment's frames (ends the episode early)."""


class _Moment:
    """Observer: the frames of the first step at which a scripted event has happened, else of mid-episode
    (or of the last step, when the episode ends before)."""

    def __init__(self, mid_step: int) -> None:
        self.mid_step = mid_step
        self.step = 0
        self.frames: dict[str, np.ndarray] = {}
        self.what = ""

    def _grab(self, env: Any, what: str) -> None:
        base = env.unwrapped
        self.frames = {name: base.render_camera(name, conditions=False) for name in GALLERY_CAMERAS}
        self.what = what

    def on_reset(self, env: Any, obs: dict, info: dict) -> None:
        self.step = 0
        self._check(env, info, ended=False)

    def on_step(self, env: Any, obs: dict, reward: float, terminated: bool, truncated: bool, info: dict) -> None:
        self.step += 1
        self._check(env, info, ended=terminated or truncated)

    def _check(self, env: Any, info: dict, ended: bool) -> None:
        events = info.get("scenario_events") or []
        t = float(env.unwrapped.time_s)
        if events:
            self._grab(env, f"{events[0]['kind']} at {float(events[0]['time_s']):.1f} s")
            raise _KeyMoment()
        if self.step == self.mid_step and not self.frames:
            self._grab(env, f"mid-episode, {t:.1f} s")
        if ended and not self.frames:
            self._grab(env, f"episode end, {t:.1f} s")


def _gallery_files(files: list[str] | None) -> list[Path]:
    from e2e_drive.provenance import REPO_ROOT

    if files:
        return [Path(f) for f in files]
    folder = REPO_ROOT / GALLERY_ENV_DIR
    found = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    if not found:
        raise ConfigError(f"{folder}: no scenario files (*.toml) for the gallery; name some on the command line")
    return found


def _load_gallery_scenario(path: Path) -> Any:
    from e2e_drive.config import load_toml
    from e2e_drive.scenarios import load_scenario

    if not path.is_file():
        raise ConfigError(f"{path}: no such scenario file")
    if path.suffix.lower() == ".toml" and "id" not in load_toml(path):
        raise ConfigError(f"{path}: not a scenario file (it names no env 'id'); the gallery takes scenario files "
                          f"(envs/abilities/*.toml)")
    return load_scenario(path)


def write_gallery(files: list[str] | None = None, out_dir: str | Path = "docs/gallery", seed: int = 0,
                  agent_spec: str | None = None, progress: bool = True) -> dict[str, Any]:
    """``e2e-drive gallery``: one dashcam and one bird's-eye PNG per scenario at its key moment.

    Each scenario file (default: every file of ``envs/abilities/``) is driven by ``agent_spec``
    (default: the privileged expert) on ``seed`` until its first scripted event happens (cut-in,
    brake, ...), or to mid-episode when it has none, and the frames of that step are written as
    ``OUT/<name>_dashcam.png`` and ``OUT/<name>_bev.png`` (OpenCV), with ``OUT/gallery.md`` listing
    them. Every file is checked before any is driven. Returns the paths and each scenario's moment.
    """
    from e2e_drive.agents.loading import load_agent
    from e2e_drive.agents.loop import drive_episode
    from e2e_drive.config import DEFAULT_CAMERAS
    from e2e_drive.env import make_env
    from e2e_drive.provenance import REPO_ROOT
    from e2e_drive.scenarios.base import get_scenario

    paths = _gallery_files(files)
    scenarios = [_load_gallery_scenario(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = agent_spec or str(REPO_ROOT / GALLERY_AGENT)
    entries = []
    bar = tqdm(scenarios, desc="gallery", unit="scenario", disable=not progress)
    for sf in bar:
        bar.set_postfix_str(sf.name)
        agent = load_agent(spec)
        cameras = {**dict(sf.config.get("cameras") or DEFAULT_CAMERAS), **GALLERY_CAMERAS}
        env = make_env(str(sf.path), {"cameras": cameras})
        try:
            config = env.unwrapped.config
            policy_hz = float(config["policy_frequency_hz"])
            moment = _Moment(mid_step=max(1, int(round(float(config["duration_s"]) * policy_hz / 2))))
            try:
                drive_episode(env, agent, seed, [moment])
            except _KeyMoment:
                pass
        finally:
            env.close()
        written = {}
        for name, frame in moment.frames.items():
            kind = "bev" if name.endswith("bev") else "dashcam"
            path = out / f"{sf.name}_{kind}.png"
            if not cv2.imwrite(str(path), _to_bgr(frame)):
                raise OSError(f"{path}: OpenCV could not write the PNG")
            written[kind] = str(path)
        ability = get_scenario(sf.scenario, source=str(sf.path)).ability
        entries.append({"scenario": sf.name, "ability": ability, "moment": moment.what,
                        "description": sf.description, **written})
    bar.close()
    lines = [f"Key moments of the scenarios, driven by {Path(spec).stem} on seed {seed} "
             "(`e2e-drive gallery`): the dashcam and the bird's-eye view at the first scripted event, "
             "or at mid-episode when the scenario has none.", "",
             "| scenario | ability | moment | dashcam | bird's-eye view |", "|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['scenario']} | {e['ability'] or '-'} | {e['moment']} | "
                     f"![{e['scenario']} dashcam]({Path(e['dashcam']).name}) | "
                     f"![{e['scenario']} bird's-eye view]({Path(e['bev']).name}) |")
    markdown = out / "gallery.md"
    markdown.write_text("\n".join(lines) + "\n")
    return {"markdown": str(markdown), "scenarios": entries}

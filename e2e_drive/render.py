"""Render what an agent sees into a browser-playable video (VP8 .webm) and PNG snapshots."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

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


def render_clip(env: Any, camera: str, seconds: float, out_dir: str | Path, seed: int = 0,
                policy: Callable[[dict, dict], np.ndarray] | None = None, snapshots: int = 4,
                overlay: Callable[[np.ndarray, dict, dict], np.ndarray] | None = None) -> dict[str, Any]:
    """Drive ``env`` for ``seconds`` with ``policy(obs, info)`` (default: coast straight) and record ``camera``.

    Writes ``<camera>.webm`` and ``<camera>_<k>.png`` snapshots into ``out_dir`` and returns their
    paths with the number of frames. ``overlay(frame_rgb, obs, info)`` may draw on each frame.
    """
    base = env.unwrapped
    if camera not in base.cameras:
        raise ConfigError(f"--camera {camera!r}: this scenario has cameras {sorted(base.cameras)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fps = base.config["policy_frequency_hz"]
    steps = max(1, int(round(seconds * fps)))
    obs, info = env.reset(seed=seed)
    spec = base.camera_specs[camera]
    scale = max(1, -(-MIN_VIDEO_WIDTH_PX // spec.width_px))
    size = (spec.width_px * scale, spec.height_px * scale)
    video_path = out / f"{camera}.webm"
    writer = open_webm(video_path, fps, size)
    snap_at = set(np.linspace(0, steps - 1, max(1, snapshots)).astype(int).tolist()) if snapshots else set()
    pngs: list[str] = []
    frames = 0
    try:
        for k in tqdm(range(steps), desc=f"render {camera}", unit="frame"):
            channels = 1 if spec.grayscale else 3
            frame = obs[camera][:, :, -channels:]
            if overlay is not None:
                frame = overlay(frame if channels == 3 else np.repeat(frame, 3, axis=2), obs, info)
            bgr = _to_bgr(frame)
            writer.write(cv2.resize(bgr, size, interpolation=cv2.INTER_NEAREST))
            frames += 1
            if k in snap_at:
                path = out / f"{camera}_{len(pngs):02d}.png"
                cv2.imwrite(str(path), bgr)
                pngs.append(str(path))
            if k == steps - 1:
                break
            action = policy(obs, info) if policy is not None else np.zeros(2, np.float32)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                obs, info = env.reset(seed=seed + k + 1)
    finally:
        writer.release()
    return {"video": str(video_path), "snapshots": pngs, "frames": frames, "fps": fps}

"""The render command writes a browser-playable VP8 .webm and PNG snapshots that are not blank."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from e2e_drive.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_render_writes_webm_and_snapshots(tmp_path, capsys):
    out = tmp_path / "clip"
    assert main(["render", "--env", str(REPO / "envs" / "highway.toml"), "--seconds", "1.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    video = out / "dashcam.webm"
    assert str(video.resolve()) in printed
    assert video.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML header: a Matroska/WebM file
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 6  # 1.2 s at 5 Hz
    assert frames[0].shape[1] >= 600  # scaled up so a person can see it
    snaps = sorted(out.glob("dashcam_*.png"))
    assert len(snaps) >= 2
    for p in snaps:
        img = cv2.imread(str(p))
        assert img.shape == (66, 200, 3) and img.std() > 10
    assert not np.array_equal(cv2.imread(str(snaps[0])), cv2.imread(str(snaps[-1])))


def test_render_unknown_camera_is_one_line_error(tmp_path, capsys):
    assert main(["render", "--camera", "roof", "--seconds", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'roof'" in err and "dashcam" in err and "Traceback" not in err

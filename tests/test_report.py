"""The report: one self-contained HTML file (tables, plots, videos, no network references) and a
Markdown summary; checked in a real headless browser when chromium is installed."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.eval.runner import evaluate
from tiny import tiny_scenario

HERE = __name__

TINY = tiny_scenario(description=None)


class SteadyAgent:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.zeros(2, np.float32)


class SwervingAgent:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.array([0.2, 0.6], np.float32)


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.refs: list[tuple[str, str, str]] = []
        self.videos: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href", "poster", "xlink:href", "data", "action") and value is not None:
                self.refs.append((tag, name, value))
                if tag == "video" and name == "src":
                    self.videos.append(value)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    env = tmp / "tiny.toml"
    env.write_text(TINY)
    out = tmp / "run"
    evaluate([str(env)], [f"{HERE}:SteadyAgent", f"{HERE}:SwervingAgent"], episodes=2, seed=0, out_dir=out,
             conditions=["train", "night"], workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def report(run_dir) -> dict:
    from e2e_drive.eval.report import write_report

    return write_report(run_dir, videos=1)


def test_report_is_one_self_contained_file(run_dir, report):
    path = Path(report["html"])
    assert path == run_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    parser = _Collect()
    parser.feed(text)
    for tag, name, value in parser.refs:  # everything inline: data URIs or in-page anchors only
        assert value.startswith(("data:", "#")), (tag, name, value[:80])
    assert parser.tags.get("link", 0) == 0 and parser.tags.get("script", 0) == 0
    assert parser.tags.get("style", 0) >= 1  # the page's CSS (and the plots' own)
    assert parser.tags["table"] >= 4  # main table, three summary tables, the comparison
    assert parser.tags["svg"] >= 3  # distributions, rates, trajectories
    assert "SteadyAgent" in text and "SwervingAgent" in text and "Agents x conditions" in text
    assert "Paired comparison" in text and "Ego trajectories" in text
    assert len(parser.videos) == 2  # one worst episode per agent
    for uri in parser.videos:
        assert uri.startswith("data:video/webm;base64,")
        data = base64.b64decode(uri.split(",", 1)[1])
        assert data[:4] == b"\x1a\x45\xdf\xa3" and len(data) < 500_000  # WebM (EBML), kept small
    assert "replay reproduces the stored episode line exactly" in text
    assert report["mismatches"] == 0


def test_markdown_summary(run_dir, report):
    md = Path(report["markdown"]).read_text()
    assert Path(report["markdown"]) == run_dir / "summary.md"
    assert "| agent | scenario |" in md and "SteadyAgent" in md and "SwervingAgent" in md
    assert "night: success" in md and "Paired comparison" in md
    assert "<" not in md.replace("<=", "")  # Markdown tables, no HTML


def test_report_cli(run_dir, tmp_path, capsys):
    from e2e_drive.cli import main

    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out), "--videos", "0", "--baseline", "SwervingAgent"]) == 0
    assert out.is_file() and "<video" not in out.read_text()
    assert "report:" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not an e2e-drive run directory" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium/chrome installed (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    import cv2

    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--no-first-run", f"--user-data-dir={profile}", "--hide-scrollbars",
                        "--window-size=1280,3000", "--virtual-time-budget=5000", f"--screenshot={shot}",
                        Path(report["html"]).resolve().as_uri()],
                       check=True, capture_output=True, timeout=120, env={**os.environ, "HOME": profile})
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (3000, 1280)
    # a rendered page: text, tables and plots, not a blank or error page
    dark = (image.mean(axis=2) < 128).mean()
    assert 0.005 < dark < 0.5
    assert image.std() > 20


def test_report_uses_saved_trajectories_and_lists_errors(tmp_path):
    from e2e_drive.eval.report import write_report

    env = tmp_path / "tiny.toml"
    env.write_text(TINY)
    out = tmp_path / "run"
    evaluate([str(env)], [f"{HERE}:SteadyAgent", f"{HERE}:BrokenAgent"], episodes=1, seed=3, out_dir=out,
             workers=1, progress=False, save_trajectories=True)
    result = write_report(out, videos=0)
    text = Path(result["html"]).read_text()
    assert "saved trajectories" in text and "Ego trajectories" in text
    assert "agent_error" in text and "ZeroDivisionError" in text  # the error episode, its reason and traceback
    assert result["replays"] == 0  # nothing re-simulated: the paths came from the .npz files


class BrokenAgent:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.array([1 / 0, 0.0])

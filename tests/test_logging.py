"""Messages go through :mod:`logging` (e2e_drive.log): ``--quiet`` keeps warnings and errors only,
``--verbose`` adds debug lines, both before or after the command; results stay on stdout."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from tqdm import tqdm

from e2e_drive import log
from e2e_drive.cli import main
from tiny import tiny_scenario

REPO = Path(__file__).resolve().parents[1]
HIGHWAY = str(REPO / "envs" / "highway.toml")

TINY = tiny_scenario(vehicles_count=2, duration_s=1.0, width_px=32, height_px=16, description='tiny logging test highway')


class Coast:
    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        import numpy as np

        return np.array([0.0, 0.0], np.float32)


def test_quiet_hides_an_info_line_and_verbose_shows_debug_lines(tmp_path, capsys):
    """One real command (evaluate): its "next:" hint is an info line on stderr, the table and paths
    are its output on stdout."""
    env = tmp_path / "tiny.toml"
    env.write_text(TINY)
    out = tmp_path / "run"
    args = ["evaluate", "--env", str(env), "--agent", f"{__name__}:Coast", "--episodes", "1", "--out", str(out),
            "--workers", "1", "--no-progress"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "next:     e2e-drive report" in captured.err and "next:" not in captured.out
    assert "summary:" in captured.out and "debug " not in captured.err

    assert main(["--quiet"] + args) == 0  # resumes: nothing left to run, same output
    captured = capsys.readouterr()
    assert "next:" not in captured.err and "summary:" in captured.out

    assert main(args + ["-v"]) == 0
    err = capsys.readouterr().err
    assert "next:     e2e-drive report" in err
    assert f"debug e2e_drive.cli: e2e-drive evaluate: env=[{str(env)!r}]" in err


def test_verbose_and_quiet_before_or_after_the_command(capsys):
    assert main(["validate", HIGHWAY, "--verbose"]) == 0
    captured = capsys.readouterr()
    assert f"debug e2e_drive.cli: {HIGHWAY}: checking it as a scenario file" in captured.err
    assert captured.out.strip() == f"ok: {HIGHWAY} (scenario)"
    assert main(["-v", "validate", HIGHWAY]) == 0
    assert "checking it as a scenario file" in capsys.readouterr().err
    assert main(["validate", HIGHWAY]) == 0
    assert capsys.readouterr().err == ""
    # an error still shows with --quiet, as one line
    assert main(["-q", "validate", str(REPO / "envs" / "no_such.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "e2e-drive validate: error:" in err and "no_such.toml" in err
    with pytest.raises(SystemExit) as exc:
        main(["-q", "validate", HIGHWAY, "-v"])
    assert exc.value.code == 2
    assert "exclude each other" in capsys.readouterr().err


def test_the_level_is_put_back_after_a_command(capsys):
    package = logging.getLogger("e2e_drive")
    before = package.level
    assert main(["-q", "validate", HIGHWAY]) == 0
    assert package.level == before == logging.INFO
    assert package.handlers == [log.HANDLER]  # tqdm's redirect is undone too


def test_lines_go_to_the_stderr_of_the_moment_and_above_progress_bars(capsys):
    logger = log.get_logger("e2e_drive.test_logging")
    logger.info("first line")
    logger.debug("not shown by default")
    assert capsys.readouterr().err == "first line\n"
    with log.command_output(log.VERBOSE):
        with tqdm(total=3, file=sys.stderr, desc="bar") as bar:
            bar.update(1)
            logger.debug("while the bar runs")
    err = capsys.readouterr().err
    assert "debug e2e_drive.test_logging: while the bar runs\n" in err
    with log.command_output(log.QUIET):
        logger.info("hidden")
        logger.warning("a warning stays")
    assert capsys.readouterr().err == "a warning stays\n"
    assert log.get_logger("elsewhere").name == "e2e_drive.elsewhere"

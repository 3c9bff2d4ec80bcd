"""Hostile input: every command answers bad input with one line naming the file, key or value
and exit status 2, never a traceback and never silent acceptance.

In-process through :func:`e2e_drive.cli.main` (stderr captured) and, where the real process
matters (the working directory on sys.path, ``--debug``), as ``python3 -m e2e_drive``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from e2e_drive.cli import main
from e2e_drive.errors import ConfigError
from e2e_drive.eval import runner
from tiny import tiny_scenario

HERE = __name__
REPO = Path(__file__).resolve().parents[1]

TINY = tiny_scenario(duration_s=1.0, description=None)


# ---------------------------------------------------------------------------- tiny agents
class Steady:
    """Holds speed and lane."""

    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return np.zeros(2, np.float32)


class Braking(Steady):
    def act(self, observation, info=None):
        return np.array([-0.2, 0.0], np.float32)


BAD_MODULE = '''
class Bad:
    """Its constructor raises, as an agent without its weights would."""

    def __init__(self):
        raise RuntimeError("no weights")

    def reset(self, seed=None):
        pass

    def act(self, observation, info=None):
        return [0.0, 0.0]
'''


# ---------------------------------------------------------------------------- helpers
def cli(capsys, *args: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``e2e-drive ARGS`` run in this process."""
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def cli_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python3 -m e2e_drive ARGS`` in ``cwd``, this checkout first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "e2e_drive", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_line_error(rc: int, err: str, *needles: str) -> str:
    """Assert status 2 and a single stderr line holding every needle; return the line."""
    assert "Traceback" not in err, err
    line = err.strip()
    assert rc == 2, (rc, err)
    assert line.count("\n") == 0, err
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture()
def tiny_env(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def made_run(tmp_path_factory) -> Path:
    """A finished two-agent run (2 seeds), made once; tests copy it."""
    base = tmp_path_factory.mktemp("made")
    env = base / "tiny.toml"
    env.write_text(TINY)
    out = base / "run"
    runner.evaluate([env], [f"{HERE}:Steady", f"{HERE}:Braking"], episodes=2, seed=0, out_dir=out,
                    workers=1, progress=False)
    return out


@pytest.fixture()
def run_dir(made_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(made_run, out)
    return out


def _rewrite_line(run: Path, index: int, change) -> Path:
    path = run / "episodes.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[index])
    change(row)
    lines[index] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- 1. not UTF-8
def test_non_utf8_scenario_and_agent_files_name_the_file(tmp_path, tiny_env, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe id = 1")
    one_line_error(*cli(capsys, "validate", bad)[::2], str(bad), "UTF-8")
    one_line_error(*cli(capsys, "evaluate", "--env", bad, "--agent", f"{HERE}:Steady", "--out",
                        tmp_path / "o1", "--no-progress")[::2], str(bad), "UTF-8")
    one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", bad, "--out",
                        tmp_path / "o2", "--no-progress")[::2], str(bad), "UTF-8")
    one_line_error(*cli(capsys, "train", "--agent", bad, "--data", tmp_path, "--out", tmp_path / "t")[::2],
                   str(bad), "UTF-8")


# ---------------------------------------------------------------------------- 2. a directory
def test_a_directory_given_as_a_file_is_called_a_directory(tmp_path, tiny_env, capsys):
    envs = tmp_path / "envs"
    envs.mkdir()
    one_line_error(*cli(capsys, "validate", envs)[::2], str(envs), "is a directory")
    one_line_error(*cli(capsys, "evaluate", "--env", envs, "--agent", f"{HERE}:Steady", "--out",
                        tmp_path / "o", "--no-progress")[::2], str(envs), "is a directory")
    one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", envs, "--out",
                        tmp_path / "o", "--no-progress")[::2], str(envs), "is a directory")


# ---------------------------------------------------------------------------- 3. neither kind
@pytest.mark.parametrize("text", ["", 'description = "a scenario without its id"\n'])
def test_validate_refuses_a_file_that_is_neither_scenario_nor_agent(tmp_path, capsys, text):
    path = tmp_path / "what.toml"
    path.write_text(text)
    line = one_line_error(*cli(capsys, "validate", path)[::2], str(path), "scenario", "agent")
    assert "'id'" in line and "'type'" in line and "'class'" in line


# ---------------------------------------------------------------------------- 4. unwritable --out
def test_evaluate_unwritable_out_fails_before_any_work(tmp_path, tiny_env, capsys, monkeypatch):
    blocker = tmp_path / "somefile"
    blocker.write_text("a regular file where a folder should be\n")
    out = blocker / "run"

    def no_work(*args, **kwargs):
        raise AssertionError("work started before --out was checked")

    monkeypatch.setattr(runner, "plan_run", no_work)
    one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", f"{HERE}:Steady", "--out", out,
                        "--workers", "1", "--no-progress")[::2], "--out", str(out))


def test_compare_unwritable_result_fails_before_printing(run_dir, capsys):
    (run_dir / "compare_Steady.json").mkdir()  # where compare would write its result
    rc, out, err = cli(capsys, "compare", run_dir, "--baseline", "Steady")
    one_line_error(rc, err, "compare_Steady.json")
    assert out == ""


def test_report_unwritable_out(run_dir, tmp_path, capsys):
    blocker = tmp_path / "somefile"
    blocker.write_text("x\n")
    out = blocker / "report.html"
    one_line_error(*cli(capsys, "report", run_dir, "--out", out, "--videos", "0")[::2], "--out", str(out))
    (run_dir / "summary.md").mkdir()  # the report writes DIR/summary.md too
    one_line_error(*cli(capsys, "report", run_dir, "--videos", "0")[::2], "summary.md")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a 0o555 folder")
def test_read_only_out_folders(run_dir, tmp_path, tiny_env, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    run_dir.chmod(0o555)
    try:
        one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", f"{HERE}:Steady", "--out",
                            locked / "run", "--workers", "1", "--no-progress")[::2], str(locked))
        rc, out, err = cli(capsys, "compare", run_dir, "--baseline", "Steady")
        one_line_error(rc, err, str(run_dir))
        assert out == ""
        one_line_error(*cli(capsys, "report", run_dir, "--out", locked / "r.html", "--videos", "0")[::2],
                       str(locked))
    finally:
        locked.chmod(0o755)
        run_dir.chmod(0o755)


def test_permission_denied_out_folders(run_dir, tmp_path, tiny_env, capsys, monkeypatch):
    """What a 0o555 folder does to a user who is not root, simulated (tests may run as root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) in (locked, run_dir) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", f"{HERE}:Steady", "--out",
                        locked / "run", "--workers", "1", "--no-progress")[::2],
                   f"--out {locked / 'run'}: cannot be created: {locked} is not writable")
    one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", f"{HERE}:Steady", "--out",
                        locked, "--workers", "1", "--no-progress")[::2], f"--out {locked}: not writable")
    rc, out, err = cli(capsys, "compare", run_dir, "--baseline", "Steady")
    one_line_error(rc, err, str(run_dir / "compare_Steady.json"), "not writable")
    assert out == ""
    one_line_error(*cli(capsys, "report", run_dir, "--out", locked / "r.html", "--videos", "0")[::2],
                   f"--out {locked / 'r.html'}", "not writable")
    assert not (locked / "run").exists() and not (locked / "r.html").exists()


# ---------------------------------------------------------------------------- 5. episode lines
@pytest.mark.parametrize("command", ["compare", "report"])
@pytest.mark.parametrize("key,value", [("status", None), ("driving_score", None), ("driving_score", "high"),
                                       ("seed", "x"), ("collision", "no")])
def test_episode_line_with_a_missing_or_mistyped_key(run_dir, capsys, command, key, value):
    def change(row):
        if value is None:
            del row[key]
        else:
            row[key] = value

    path = _rewrite_line(run_dir, 1, change)
    args = ["--baseline", "Steady"] if command == "compare" else ["--videos", "0"]
    one_line_error(*cli(capsys, command, run_dir, *args)[::2], str(path), "line 2", f"'{key}'")


def test_a_complete_last_line_is_checked_too(run_dir, capsys):
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    path = _rewrite_line(run_dir, len(lines) - 1, lambda row: row.update(seed="x"))
    one_line_error(*cli(capsys, "compare", run_dir, "--baseline", "Steady")[::2],
                   str(path), f"line {len(lines)}", "'seed'")


def test_a_truncated_last_line_is_still_ignored(run_dir, capsys):
    path = run_dir / "episodes.jsonl"
    whole = runner.load_episodes(run_dir)
    with path.open("a") as fh:
        fh.write('{"agent": "Steady", "scenario": "tiny", "condition": "train", "seed": 7, "sta')
    assert runner.load_episodes(run_dir) == whole
    rc, out, err = cli(capsys, "compare", run_dir, "--baseline", "Steady")
    assert rc == 0 and err == "", err
    assert runner.load_episodes(run_dir, repair=True) == whole
    assert path.read_text().endswith("}\n")


def test_check_rows_raises_config_error():
    from e2e_drive.eval.summary import summarize

    with pytest.raises(ConfigError, match="lacks keys"):
        summarize([{"agent": "a"}])


# ---------------------------------------------------------------------------- 6. constructors
class Bad(Steady):
    """Its constructor raises, as an agent without its weights would."""

    def __init__(self):
        raise RuntimeError("no weights")


class Picky(Steady):
    """Its constructor raises for some parameter values."""

    def __init__(self, mode: str = "ok"):
        if mode != "ok":
            raise ValueError(f"mode {mode!r} is not supported")


def test_agent_constructor_that_raises_is_named_with_its_cause(tmp_path, tiny_env, capsys):
    one_line_error(*cli(capsys, "evaluate", "--env", tiny_env, "--agent", f"{HERE}:Bad", "--out", tmp_path / "o",
                        "--workers", "1", "--no-progress")[::2],
                   f"agent '{HERE}:Bad': constructor raised RuntimeError: no weights")
    picky = tmp_path / "picky.toml"
    picky.write_text(f'class = "{HERE}:Picky"\n[params]\nmode = "fast"\n')
    one_line_error(*cli(capsys, "validate", picky)[::2],
                   f"{picky}: agent '{HERE}:Picky': constructor raised ValueError: mode 'fast' is not supported")
    rc, out, err = cli(capsys, "validate", picky, "--debug")
    assert rc == 2 and "Traceback" in err and "raise ValueError" in err
    assert err.strip().splitlines()[-1].startswith(f"e2e-drive validate: error: {picky}: agent")


def test_debug_prints_the_traceback_in_a_real_process(tmp_path):
    """A user's module in the working directory, as ``e2e-drive`` finds it (--debug after the command:
    the test above)."""
    (tmp_path / "badmod.py").write_text(BAD_MODULE)
    (tmp_path / "bad.toml").write_text('class = "badmod:Bad"\n')
    done = cli_process("--debug", "validate", "bad.toml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" in done.stderr and 'raise RuntimeError("no weights")' in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("e2e-drive validate: error: bad.toml: agent 'badmod:Bad': "
                                                    "constructor raised RuntimeError: no weights")


def test_an_os_error_of_any_command_is_one_line_naming_the_path(tmp_path, tiny_env, capsys):
    blocker = tmp_path / "somefile"
    blocker.write_text("x\n")
    one_line_error(*cli(capsys, "render", "--env", tiny_env, "--seconds", "0.4", "--out", blocker / "clip")[::2],
                   str(blocker))


# ---------------------------------------------------------------------------- 7. camera size
def _scenario(tmp_path: Path, camera: str, frame_stack: int = 1) -> Path:
    path = tmp_path / "big.toml"
    path.write_text(f'id = "e2e_drive/Highway-v0"\n[config]\nframe_stack = {frame_stack}\n'
                    f'[config.cameras.dashcam]\n{camera}\n')
    return path


def test_a_huge_camera_is_refused_with_its_memory(tmp_path, capsys):
    path = _scenario(tmp_path, 'kind = "dashcam"\nwidth_px = 10000\nheight_px = 10000')
    one_line_error(*cli(capsys, "validate", path)[::2], str(path), "cameras.dashcam.width_px = 10000",
                   "4096", "300 MB")


def test_all_cameras_of_one_observation_are_bounded(tmp_path, capsys):
    path = _scenario(tmp_path, 'kind = "dashcam"\nwidth_px = 4000\nheight_px = 4000', frame_stack=12)
    one_line_error(*cli(capsys, "validate", path)[::2], str(path), "frame_stack", "576 MB", "512 MB")
    ok = _scenario(tmp_path, 'kind = "dashcam"\nwidth_px = 4000\nheight_px = 4000', frame_stack=1)
    rc, out, err = cli(capsys, "validate", ok)
    assert rc == 0 and "ok:" in out, err


# ---------------------------------------------------------------------------- 8. agent file keys
def test_agent_parameter_errors_name_the_file_and_key_plainly(tmp_path, capsys):
    threads = tmp_path / "threads.toml"
    threads.write_text('type = "e2e"\n[params]\ncheckpoint = "none.pt"\nnum_threads = "x"\n')
    one_line_error(*cli(capsys, "validate", threads)[::2], f"{threads}: params.num_threads = 'x': expected an integer")

    negative = tmp_path / "negative.toml"
    negative.write_text('type = "e2e"\n[params]\ncheckpoint = "none.pt"\nnum_threads = -2\n')
    one_line_error(*cli(capsys, "validate", negative)[::2], f"{negative}: params.num_threads = -2")

    model = tmp_path / "model.toml"
    model.write_text('type = "e2e"\n[params]\ncheckpoint = "none.pt"\n[params.model]\narch = 1\n')
    one_line_error(*cli(capsys, "validate", model)[::2], f"{model}: params.model.arch = 1: expected a string")

    missing = tmp_path / "missing.toml"
    missing.write_text('type = "e2e"\n')
    one_line_error(*cli(capsys, "validate", missing)[::2], f"{missing}: params.checkpoint: missing required")

    planner = tmp_path / "planner.toml"
    planner.write_text('type = "expert"\n[params.planner_params]\ncruise_speed_mps = "fast"\n')
    one_line_error(*cli(capsys, "validate", planner)[::2],
                   f"{planner}: params.planner_params.cruise_speed_mps = 'fast': expected a number")


def test_training_tables_name_the_file_and_key(tmp_path, capsys):
    train = tmp_path / "train.toml"
    train.write_text('type = "e2e"\n[params]\ncheckpoint = "none.pt"\n[params.train]\nnum_threads = -1\n')
    one_line_error(*cli(capsys, "train", "--agent", train, "--data", tmp_path, "--out", tmp_path / "t")[::2],
                   f"{train}: params.train.num_threads = -1")
    table = tmp_path / "table.toml"
    table.write_text('type = "e2e"\n[params]\ncheckpoint = "none.pt"\nmodel = 3\n')
    one_line_error(*cli(capsys, "train", "--agent", table, "--data", tmp_path, "--out", tmp_path / "t")[::2],
                   f"{table}: params.model = 3: expected a table")
    flat = tmp_path / "flat.toml"
    flat.write_text('type = "e2e"\nparams = 3\n')
    one_line_error(*cli(capsys, "train", "--agent", flat, "--data", tmp_path, "--out", tmp_path / "t")[::2],
                   f"{flat}: params = 3: expected a table")

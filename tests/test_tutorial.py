"""docs/tutorial.md works as written: every code block runs, in order, in a fresh folder.

Blocks: ``bash`` runs (``e2e-drive`` is this checkout's CLI); ``python`` runs, unless its first line is a
file-name comment (``# my_agent.py``), which writes the block to that file, as does a ``toml`` block with
one; a block right after ``<!-- not run in the tests: ... -->`` (the install) is skipped, and the
reason must be given. Any other kind of block is an error (it would not be checked).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tiny import REPO

TUTORIAL = REPO / "docs" / "tutorial.md"
_BLOCK = re.compile(r"(?:<!-- not run in the tests: (?P<why>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
_FILE = re.compile(r"^# ([\w.-]+\.(?:py|toml))\n")


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(language, body, reason it is not run or None) of every fenced block, in order."""
    return [(m["lang"], m["body"], m["why"]) for m in _BLOCK.finditer(text)]


def test_every_block_is_run_or_says_why_not():
    found = blocks(TUTORIAL.read_text())
    assert len(found) >= 10
    assert [why for *_, why in found if why] == ["it installs packages (the tests run in an installed checkout)"]
    assert {lang for lang, *_ in found} <= {"bash", "python", "toml"}
    text = TUTORIAL.read_text()
    assert text.count("```") == 2 * len(found)  # no block the pattern misses


def test_the_tutorial_runs(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("envs", "agents"):
        (work / name).symlink_to(REPO / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "e2e-drive"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m e2e_drive "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": f"{REPO}:{work}"}
    for i, (lang, body, why) in enumerate(blocks(TUTORIAL.read_text())):
        if why:
            continue
        named = _FILE.match(body)
        if named:
            (work / named[1]).write_text(body)
            continue
        cmd = ["bash", "-euo", "pipefail", "-c", body] if lang == "bash" else [sys.executable, "-c", body]
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"block {i} ({lang}) failed:\n{body}\n--- stdout\n{done.stdout[-3000:]}" \
                                     f"\n--- stderr\n{done.stderr[-3000:]}"
        if "e2e-drive benchmark" in body:  # the second run reuses the first one's episodes
            assert "reusing 3 episodes of an earlier run" in done.stdout, done.stdout[-3000:]
        if "e2e-drive verify" in body:
            assert "2/2 re-run episodes match" in done.stdout, done.stdout
    assert (work / "runs" / "mine" / "report.html").is_file()
    assert (work / "runs" / "bc" / "model.pt").is_file()
    board = (work / "runs" / "leaderboard" / "leaderboard.md").read_text()
    assert "LaneKeeper *" in board and "my_e2e *" in board and "modular" in board
    assert "2/2 re-run episodes match" in board
    import gzip
    import json

    bundle = json.loads(gzip.decompress((work / "runs" / "bench" / "bundle.json.gz").read_bytes()))
    assert bundle["agents"]["my_e2e"]["spec"] == "my_e2e.toml"  # relative: it verifies from another folder too
    assert list(bundle["agents"]["my_e2e"]["fingerprint"]["referenced_files_sha256"]) == ["runs/bc/model.pt"]

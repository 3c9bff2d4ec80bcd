"""Where a result came from: the code's git commit and the machine it ran on (one place for both)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

#: The repository root when the package runs from a clone (editable install).
REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit(short: bool = False) -> str | None:
    """The checked-out commit, or None outside a git checkout."""
    return _git("rev-parse", *(["--short"] if short else []), "HEAD") or None


def git_dirty(*paths: str) -> bool | None:
    """Whether tracked files (under ``paths``, default all) differ from the commit; None outside git."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return None if status is None else bool(status)


def commit_label() -> str:
    """Short commit for reports, marked when tracked files had uncommitted changes."""
    commit = git_commit(short=True)
    if commit is None:
        return "unknown"
    return commit + ("+uncommitted changes" if git_dirty() else "")


def machine_line() -> str:
    """Cores, CPU model, memory, OS and Python, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    mem = ""
    try:
        mem = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    return (f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}")

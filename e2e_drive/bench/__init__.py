"""``e2e-drive bench``: speed figures measured in one run, each next to a reference from the same run.

Machines are shared and noisy, so every figure that matters is printed as a ratio against a
reference measured in the same process, minutes apart at most.
"""

from __future__ import annotations

import importlib
import platform
import time
from typing import Callable

import os

#: Part name -> "module:function" returning the text block for that part (lazy imports).
PARTS: dict[str, str] = {
    "cameras": "e2e_drive.bench.cameras:bench_and_format",
    "env": "e2e_drive.bench.env_steps:bench_and_format",
    "traffic": "e2e_drive.bench.traffic:bench_and_format",
    "learning": "e2e_drive.bench.learning:bench_and_format",
    "eval": "e2e_drive.bench.eval_speed:bench_and_format",
}


def _resolve(target: str) -> Callable[[bool], str]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_bench(parts: list[str] | None = None, quick: bool = False) -> str:
    """Run the named parts (all by default) and return the report text."""
    from e2e_drive.errors import ConfigError

    chosen = list(PARTS) if not parts else parts
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise ConfigError(f"--only {unknown[0]!r} is not a bench part; parts: {', '.join(PARTS)}")
    lines = [
        f"e2e-drive bench  {time.strftime('%Y-%m-%d %H:%M')}  python {platform.python_version()}  "
        f"{platform.machine()}  {os.cpu_count()} cores{'  (quick)' if quick else ''}",
    ]
    for name in chosen:
        t0 = time.perf_counter()
        block = _resolve(PARTS[name])(quick)
        lines.append(f"\n== {name} ({time.perf_counter() - t0:.0f} s)\n{block}")
    return "\n".join(lines)

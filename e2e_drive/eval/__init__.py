"""Evaluation: ground-truth records, per-episode metrics, scores, statistics and summaries.

Pure functions only here; the runner that drives the simulator lives elsewhere.
"""

__all__ = ["EpisodeRecord", "RecordBuilder", "STATUSES", "episode_metrics"]

_LAZY = {"STATUSES": "metrics", "episode_metrics": "metrics", "EpisodeRecord": "record", "RecordBuilder": "record"}


def __getattr__(name: str):
    """The re-exported names, imported on first use: importing any ``e2e_drive.eval`` module (the evaluating
    process's runner, store, summary) then no longer imports the metrics' scipy.signal (~1.5 CPU-s)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

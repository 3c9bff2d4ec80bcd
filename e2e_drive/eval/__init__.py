"""Evaluation: ground-truth records, per-episode metrics, scores, statistics and summaries.

Pure functions only here; the runner that drives the simulator lives elsewhere.
"""

from e2e_drive.eval.metrics import STATUSES, episode_metrics
from e2e_drive.eval.record import EpisodeRecord, RecordBuilder

__all__ = ["EpisodeRecord", "RecordBuilder", "STATUSES", "episode_metrics"]

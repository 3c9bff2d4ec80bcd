"""The perception labels: what a network's perception head predicts, in this order, and their loss scales.

Shards store these per step (computed from ground truth in :mod:`e2e_drive.learning.dataset`);
a model's perception head outputs ``label / scale``.
"""

from __future__ import annotations

#: Perception labels stored per step (ground truth), in this order.
LABEL_NAMES: tuple[str, ...] = (
    "lateral_offset_m",        # + = right of the lane centre
    "heading_error_rad",       # + = pointing right of the lane direction
    "curvature_1pm",           # lane curvature here, + = curving right
    "curvature_ahead_1pm",     # 20 m ahead
    "lead_present",            # 1 when a vehicle is ahead in the ego lane within LEAD_GAP_CAP_M
    "lead_gap_m",              # bumper-to-bumper gap to it, capped at LEAD_GAP_CAP_M (cap when absent)
    "lead_relative_speed_mps",  # its speed minus the ego's, clipped to +-REL_SPEED_CAP_MPS (0 when absent)
    "left_lane_free",          # 1 when a lane exists on the left and no vehicle is beside (gap in NEIGHBOUR_WINDOW_M)
    "right_lane_free",         # same on the right
)
#: Scale of each label for losses (label / scale is O(1)).
LABEL_SCALES: tuple[float, ...] = (1.0, 0.1, 0.02, 0.02, 1.0, 50.0, 10.0, 1.0, 1.0)

"""Vehicle detection in a dashcam or bird's-eye frame from a "vehicle colour" mask.

Dashcam: vehicles stand on the road, so what fixes their distance is where they touch it.
Per image column the lowest vehicle pixel (with a vehicle pixel above it, which rejects
single-pixel noise) is the bottom edge of the nearest vehicle seen through that column (a
nearer vehicle always covers a farther one: every car's roof reaches the horizon). The
bottom contour is cut into segments of similar rows; in each, the lowest flat part is the
rear face, whose bottom edge (the pixel boundary below the lowest vehicle row) is mapped to
the ground with the camera's nominal homography: that gives the rear bumper's distance.
Its lateral centre comes from the rear face's outer corner (the inner side may show the
side face) and the known vehicle width, or from the inner corner when the outer one is cut
by the frame border or by a nearer vehicle.

Bird's-eye view: vehicles are rectangles; connected components give them directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Width of a small obstacle (a cone) [m]: e2e_drive's cones are 0.5 m boxes.
OBSTACLE_WIDTH_M = 0.5


@dataclass
class RawDetection:
    """A vehicle in the ego frame (x forward from the ego centre, y right), before lane mapping."""

    x_rear_m: float        # rear bumper (or front bumper for vehicles behind, bev only)
    y_centre_m: float
    behind: bool           # bev only: the vehicle is behind the ego (x_rear_m is its front)
    box: tuple[int, int, int, int]
    near_edge: bool        # its bottom is cut by the frame bottom: at most this far
    row_px: float          # bottom edge row (dashcam) for the noise model; -1 for bev
    small: bool = False    # far narrower than a car, whole in view: an obstacle (a cone), centred on its middle


def bottom_contour(mask: np.ndarray, v_start: int) -> np.ndarray:
    """Per column, the lowest row r >= v_start with mask[r] and mask[r-1]; -1 where none."""
    m = mask[v_start - 1:]
    both = m[1:] & m[:-1]
    h = both.shape[0]
    flipped = both[::-1]
    any_ = flipped.any(axis=0)
    low = h - 1 - np.argmax(flipped, axis=0)
    return np.where(any_, low + v_start, -1)


def detect_dashcam(mask: np.ndarray, v_start: int, to_ground, vehicle_width_m: float = 2.0,
                   min_columns: int = 2, max_x_m: float = 110.0, small_width_m: float = 1.0,
                   obstacle_mask: np.ndarray | None = None, side_faces: bool = True) -> list[RawDetection]:
    """Vehicles from the mask of vehicle pixels of a dashcam frame.

    to_ground(u, v) -> (x, y) arrays: the nominal camera's inverse perspective mapping.
    small_width_m: a whole (uncut) detection narrower than this is a small obstacle (a cone):
        centred on what shows, not a car's width in from its outer corner.
    obstacle_mask: pixels of an obstacle's colour (orange); a detection whose bottom edge is
        mostly such pixels is a small obstacle too, also when a nearer one cuts it.
    side_faces: a segment cut by the frame's side whose bottom rises away from the cut is the side
        face of a car beside the camera's axis (true of a camera looking along the road; false for
        one looking across it, which sees cars' sides face on).
    """
    height, width = mask.shape
    bottom = bottom_contour(mask, v_start)
    has = bottom >= 0
    if not has.any():
        return []
    # segments: runs of columns with a bottom, adjacent rows within 2 px
    cols = np.flatnonzero(has)
    breaks = np.flatnonzero((np.diff(cols) > 1) | (np.abs(np.diff(bottom[cols])) > 2)) + 1
    out: list[RawDetection] = []
    for seg in np.split(cols, breaks):
        if len(seg) < min_columns:
            continue
        rows = bottom[seg]
        rmax = int(rows.max())
        rear = seg[rows >= rmax - 1]
        # a segment whose rear face is much wider than a car holds two: keep the lowest part only
        u0, u1 = int(rear[0]), int(rear[-1])
        s0, s1 = int(seg[0]), int(seg[-1])
        # cv2 fills the rows / columns whose centres round into the polygon: the lowest filled
        # row is round(true bottom edge), so the edge estimate is the row itself (same for columns)
        v_edge = float(rmax)
        gx, gy = to_ground(np.array([u0 - 0.0, u1 + 0.0, 0.5 * (u0 + u1)]), np.full(3, v_edge))
        if not np.all(np.isfinite(gx)) or gx[2] > max_x_m or gx[2] <= 0:
            continue
        y_left, y_right, x_rear = float(gy[0]), float(gy[1]), float(gx[2])
        # is an end of the segment cut (frame border, or a nearer vehicle right next to it)?
        cut_left = s0 == 0 or (bottom[s0 - 1] > rows[0] + 2)
        cut_right = s1 == width - 1 or (bottom[s1 + 1] > rows[-1] + 2)
        half = 0.5 * vehicle_width_m
        seen = y_right - y_left
        if seen > 1.6 * vehicle_width_m and not (cut_left or cut_right):
            # two vehicles side by side at the same distance: split at the middle
            for yl, yr in ((y_left, y_left + vehicle_width_m), (y_right - vehicle_width_m, y_right)):
                out.append(RawDetection(x_rear, 0.5 * (yl + yr), False, (s0, 0, s1, rmax), False, v_edge))
            continue
        centre_right = 0.5 * (y_left + y_right) > 0.0
        small = False
        if obstacle_mask is not None:
            # obstacle-coloured (orange, not a car's red) along its bottom edge: a cone
            patch = mask[max(rmax - 2, 0):rmax + 1, s0:s1 + 1]
            n_vehicle = int(patch.sum())
            small = n_vehicle > 0 and 2 * int((obstacle_mask[max(rmax - 2, 0):rmax + 1, s0:s1 + 1] & patch).sum()) \
                > n_vehicle
        obstacle_half = 0.5 * OBSTACLE_WIDTH_M
        side_only = side_faces and (s0 == 0 or s1 == width - 1) and int(rows.max() - rows.min()) > 2 and rows[
            0 if s1 == width - 1 else -1] < rmax - 2
        if side_only:
            # the rear corner is out of the frame: only the side face shows, along y = centre -+ half
            sx, sy = to_ground(seg.astype(np.float64), rows.astype(np.float64))
            ok = np.isfinite(sy)
            y_side = float(np.median(sy[ok])) if ok.any() else 0.5 * (y_left + y_right)
            y_c = y_side + half if y_side > 0 else y_side - half
        elif cut_left and cut_right:
            y_c = 0.5 * (y_left + y_right)
        elif not (cut_left or cut_right) and (small or seen < small_width_m):
            # far narrower than a car and whole: a small obstacle (a cone) stands where it shows
            y_c = 0.5 * (y_left + y_right)
            small = True
        elif cut_left:
            y_c = y_right - (obstacle_half if small else half)
        elif cut_right:
            y_c = y_left + (obstacle_half if small else half)
        else:
            y_c = y_right - half if centre_right else y_left + half
        near_edge = rmax >= height - 2 or side_only
        top = int(np.argmax(mask[:, u0:u1 + 1].any(axis=1))) if u1 >= u0 else 0
        out.append(RawDetection(x_rear, y_c, False, (s0, top, s1, rmax), near_edge, v_edge, small))
    return out


def detect_bev(mask: np.ndarray, to_ground, ego_box: tuple[int, int, int, int] | None,
               min_area_px: int = 4) -> list[RawDetection]:
    """Vehicles from the mask of vehicle pixels of a bird's-eye frame (heading up, ego fixed)."""
    m = mask.astype(np.uint8)
    if ego_box is not None:
        u0, v0, u1, v1 = ego_box
        m[max(v0, 0):v1 + 1, max(u0, 0):u1 + 1] = 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area_px:
            continue
        gx, gy = to_ground(np.array([x - 0.5, x + w - 0.5, x + 0.5 * w - 0.5, x + 0.5 * w - 0.5]),
                           np.array([y + h - 0.5, y + h - 0.5, y + h - 0.5, y - 0.5]))
        x_low, x_high = float(gx[2]), float(gx[3])     # image bottom = rear of the vehicle
        y_c = 0.5 * (float(gy[0]) + float(gy[1]))
        x_c = 0.5 * (x_low + x_high)
        box = (x, y, x + w - 1, y + h - 1)
        if x_c >= 0.0:
            out.append(RawDetection(x_low, y_c, False, box, False, -1.0))
        else:
            out.append(RawDetection(x_high, y_c, True, box, False, -1.0))
    return out

"""Planning: behaviour (IDM car following, MOBIL-style lane changes, target speed) and path.

The planner works only on a :class:`PerceptionOutput`, so it drives the same whether the
numbers come from ground truth (oracle) or from a camera.

Lateral bookkeeping: the planner keeps a *continuous* lateral coordinate across the road,
``y = lane_id * lane_width + lateral_offset`` (plus a shift that absorbs lane renumbering
where lanes are added or dropped), so a lane change is a smooth quintic ``y(t)`` from the
start position to the target lane's centre that does not jump when the ego crosses the
line and perception starts reporting the new lane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from e2e_drive.agents.modular.interfaces import PerceivedVehicle, PerceptionOutput, Plan
from e2e_drive.agents.modular.junction import JUNCTION_COMMANDS, JunctionSettings, junction_obstacles, path_speed_cap
from e2e_drive.strict import check_fields, setting

_FREE_ROAD_GAP_M = 1.0e3
#: Past a junction's entry the ego clears it (no waiting for traffic joining its path) for this long [m].
JUNCTION_PAST_M = 30.0
#: The ego's length the gap acceptance assumes (perception gives bumper gaps) [m].
_EGO_LENGTH_M = 5.0


def speed_braking_to(target_mps: float, braking_mps2: float, distance_m: float) -> float:
    """The highest speed [m/s] from which braking at ``braking_mps2`` comes down to ``target_mps`` within
    ``distance_m`` (the speed caps before a route's exit and a ring's exit bend)."""
    return math.sqrt(target_mps ** 2 + 2.0 * braking_mps2 * distance_m)


#: After a lead was last seen braking (lane_change_lead_braking_mps2), lane changes wait this long [s].
LANE_HOLD_S = 3.0


def quintic_blend(tau: float) -> float:
    """Smooth 0 -> 1 profile with zero velocity and acceleration at both ends."""
    t = min(max(tau, 0.0), 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


def quintic_blend_rate(tau: float) -> float:
    """d/dtau of :func:`quintic_blend`."""
    t = min(max(tau, 0.0), 1.0)
    return 30.0 * t * t * (1.0 - t) * (1.0 - t)


@dataclass(frozen=True)
class IDMParams:
    """Intelligent Driver Model parameters (Treiber et al. 2000).

    acceleration_max_mps2: a, the comfortable maximum acceleration.
    deceleration_comfort_mps2: b, the comfortable deceleration (positive number).
    time_headway_s: T, the desired time gap to the lead.
    min_gap_m: s0, the jam distance bumper to bumper.
    delta: the free-road exponent.
    """

    acceleration_max_mps2: float = 2.0
    deceleration_comfort_mps2: float = 3.0
    time_headway_s: float = 1.0
    min_gap_m: float = 4.0
    delta: float = 4.0

    def desired_gap_m(self, speed_mps: float, closing_speed_mps: float) -> float:
        """s* = s0 + v T + v dv / (2 sqrt(a b)), never below s0."""
        root = 2.0 * math.sqrt(self.acceleration_max_mps2 * self.deceleration_comfort_mps2)
        return max(
            self.min_gap_m,
            self.min_gap_m + speed_mps * self.time_headway_s + speed_mps * closing_speed_mps / root,
        )

    def acceleration(
        self, speed_mps: float, target_speed_mps: float, gap_m: float | None, lead_relative_speed_mps: float = 0.0
    ) -> float:
        """IDM acceleration; ``gap_m=None`` is a free road. Relative speed = lead - ego."""
        v = max(speed_mps, 0.0)
        v0 = max(target_speed_mps, 0.1)
        free = 1.0 - (v / v0) ** self.delta
        if v > v0:  # far above the target (e.g. a lower limit ahead): brake comfortably, not violently
            free = max(free, -self.deceleration_comfort_mps2 / self.acceleration_max_mps2)
        interaction = 0.0
        if gap_m is not None:
            s_star = self.desired_gap_m(v, -lead_relative_speed_mps)
            interaction = (s_star / max(gap_m, 0.1)) ** 2
        return self.acceleration_max_mps2 * (free - interaction)


@dataclass(frozen=True)
class PlannerConfig:
    """The rule planner's settings (the agent file's ``[params.planner_params]`` table), SI units.

    Each field's meaning, unit and valid range are declared with it; ``e2e_drive.strict.from_table``
    reads the table (unknown key, wrong type or out-of-range value -> ConfigError naming file and key).
    """

    cruise_speed_mps: float = setting(
        30.0, "desired speed on a free road (capped by the perceived speed limit)", unit="m/s", range=(0.0, None))
    max_lateral_acceleration_mps2: float = setting(
        3.5, "caps the speed in curves, v <= sqrt(a_lat / |kappa|)", unit="m/s^2", range=(0.0, None))
    lane_change_duration_s: float = setting(
        3.0, "duration of the quintic lateral profile (at least; longer at low speed)", unit="s", range=(0.0, None))
    max_lane_change_heading_rad: float = setting(
        0.12, "the lane-change path never points more than this off the lane", unit="rad", range=(0.0, None))
    max_lane_change_curvature_1pm: float = setting(
        0.01, "lane changes start only where the road here and 20 m ahead curves less", unit="1/m", range=(0.0, None))
    min_time_between_lane_changes_s: float = setting(
        2.0, "rest time after a lane change before the next one", unit="s", range=(0.0, None))
    lane_change_gain_mps2: float = setting(
        0.2, "MOBIL threshold: acceleration the ego must gain", unit="m/s^2", range=(0.0, None))
    politeness: float = setting(0.1, "MOBIL politeness factor p", range=(0.0, 1.0))
    max_imposed_braking_mps2: float = setting(
        1.5, "a new follower must not have to brake harder than this", unit="m/s^2", range=(0.0, None))
    min_front_gap_m: float = setting(
        10.0, "hard gap floor to the lead in the target lane (bumper to bumper)", unit="m", range=(0.0, None))
    min_rear_gap_m: float = setting(
        8.0, "hard gap floor to the follower in the target lane (bumper to bumper)", unit="m", range=(0.0, None))
    min_front_ttc_s: float = setting(
        4.0, "time-to-collision floor to the lead in the target lane", unit="s", range=(0.0, None))
    min_rear_ttc_s: float = setting(
        4.0, "time-to-collision floor to the follower in the target lane", unit="s", range=(0.0, None))
    keep_right_bias_mps2: float = setting(0.0, "extra gain for moving right (0 = symmetric passing)", unit="m/s^2")
    lane_speed_gain_per_s: float = setting(
        0.3, "extra MOBIL gain per m/s that the target lane flows faster", unit="1/s", range=(0.0, None))
    lane_change_min_flow_gain_mps: float = setting(
        0.0, "a discretionary lane change needs the target lane to flow at least this much faster than the "
             "ego's (its lead's speed, or the target speed when free within lane_flow_range_m; 0: off): with "
             "a camera blind beside the ego, change lanes to pass a slower lead, not for a little more room",
        unit="m/s", range=(0.0, None))
    lane_change_flow_hold_s: float = setting(
        0.0, "a discretionary lane change needs that faster flow (lane_change_min_flow_gain_mps) seen this long "
             "without a break (0: at once): a camera's tracked speed of the next lane's lead jumps for a second "
             "where its detection does", unit="s", range=(0.0, None))
    lane_change_flow_max_accel_mps2: float = setting(
        0.0, "that faster flow counts only while the next lane's lead is tracked accelerating or braking less "
             "than this (0: off): a tracked speed still settling (a detection that jumped) is no flow",
        unit="m/s^2", range=(0.0, None))
    lane_flow_range_m: float = setting(
        80.0, "a lane without a lead this close flows at the target speed", unit="m", range=(0.0, None))
    path_horizon_s: float = setting(
        3.0, "how far ahead (in time at the current speed) the path reaches", unit="s", range=(0.0, None))
    emergency_ttc_s: float = setting(
        2.0, "below this time to collision with the lead, brake at the maximum", unit="s", range=(0.0, None))
    max_braking_mps2: float = setting(
        5.0, "the strongest braking the planner asks for (positive number)", unit="m/s^2", range=(0.0, None))
    lead_braking_min_mps2: float = setting(
        1.0, "a lead seen braking harder than this (tracked acceleration) is checked kinematically: the ego "
             "brakes as needed to stop behind where the lead will stop, at the maximum when that needs more "
             "than comfort braking", unit="m/s^2", range=(0.0, None))
    lead_braking_scale: float = setting(
        1.0, "a lead seen braking (above lead_braking_min_mps2) is taken to brake this many times as hard as "
             "tracked in that check (1: as tracked); a camera's tracked acceleration lags the lead's",
        range=(1.0, None))
    lead_stop_emergency_headway_s: float = setting(
        1.0e9, "that check brakes at the maximum only for a lead within this time headway, comfortably "
               "beyond (a camera's tracked acceleration of a queue slowing far ahead is no emergency)",
        unit="s", range=(0.0, None))
    lead_stop_margin_m: float = setting(
        2.0, "that check keeps this bumper gap to the stopped lead", unit="m", range=(0.0, None))
    lane_change_lead_braking_mps2: float = setting(
        0.0, "no discretionary lane change while the ego lane's lead is tracked braking harder than this "
             "(0: off): swerving from a braking lead into a lane the forward camera cannot see beside the "
             "ego hits the car there; braking for where the lead will stop is the answer", unit="m/s^2",
        range=(0.0, None))
    lane_change_lead_braking_headway_s: float = setting(
        1.0e9, "that hold starts only for a lead within this time headway (a camera's track of a lead far ahead "
               "settles from the ego's speed to the lead's, which reads as braking: a slow truck ahead must still "
               "be overtaken)", unit="s", range=(0.0, None))
    comfort_braking_mps2: float = setting(
        4.0, "the IDM's braking cap outside emergencies (nuPlan comfort: 4.05)", unit="m/s^2", range=(0.0, None))
    intrusion_margin_m: float = setting(
        0.5, "within half a lane width plus this of a lane's centre is in the lane", unit="m", range=(0.0, None))
    cut_in_horizon_s: float = setting(
        1.0, "tracked lateral motion extrapolated this far to foresee cut-ins", unit="s", range=(0.0, None))
    crossing_horizon_s: float = setting(
        3.0, "tracked lateral motion extrapolated this far to foresee crossings", unit="s", range=(0.0, None))
    crossing_margin_m: float = setting(
        1.0, "extra lateral berth for traffic on roads not connected to the ego's", unit="m", range=(0.0, None))
    oncoming_speed_mps: float = setting(
        2.0, "connected-lane traffic moving towards the ego faster than this is ignored", unit="m/s", range=(0.0, None))
    # ---- route following (the satnav command of the observation; see RulePlanner._route_*)
    route_lane_change_rest_s: float = setting(
        0.5, "rest after a lane change the route asks for (keep_left / keep_right / take_exit)", unit="s",
        range=(0.0, None))
    route_time_per_lane_s: float = setting(
        4.0, "time budgeted per lane still to cross before the command's point; the speed is capped so the "
             "distance left allows it", unit="s", range=(0.0, None))
    route_min_speed_mps: float = setting(
        10.0, "the speed cap for lanes still to cross never goes below this", unit="m/s", range=(0.0, None))
    route_max_imposed_braking_mps2: float = setting(
        3.0, "a lane change the route requires may make the new follower brake this hard", unit="m/s^2",
        range=(0.0, None))
    route_gap_speed_offset_mps: float = setting(
        3.0, "while the route's lane change waits for a gap, drive at most this much faster (twice this "
             "slower) than the gap to come alongside it", unit="m/s", range=(0.0, None))
    route_gap_gain_per_s: float = setting(
        0.4, "while the route's lane change waits, the speed asked above the gap's per m the ego is behind its "
             "safe middle", unit="1/s", range=(0.0, None))
    route_gap_max_slower_mps: float = setting(
        10.0, "where the lane the ego leaves ends too soon to reach a gap at the usual offsets, drop back up "
              "to this much slower than the gap (and speed up to the cruise speed to get ahead of one)",
        unit="m/s", range=(0.0, None))
    route_slot_margin_m: float = setting(
        4.0, "the ego aims this far inside the part of a gap where the lane change check would pass (a gap "
             "with less room than this is not taken)", unit="m",
        range=(0.0, None))
    route_slot_keep_s: float = setting(
        2.0, "the gap chosen before is kept unless the ego could come alongside another one this much sooner",
        unit="s", range=(0.0, None))
    route_lane_change_duration_s: float = setting(
        2.5, "duration of a lane change the route requires (at least)", unit="s", range=(0.0, None))
    route_merge_headway_fraction: float = setting(
        0.3, "a lane change the route requires takes a gap tighter than IDM's headway: the new lead is "
        "followed at this fraction of IDM T at the change's start, relaxing to T over route_merge_relax_s "
        "(no hard braking into an accepted gap)", range=(0.0, 1.0))
    route_merge_relax_s: float = setting(
        6.0, "time over which the headway behind the new lead relaxes back to IDM T after a route lane "
        "change starts", unit="s", range=(0.1, None))
    route_lane_change_heading_rad: float = setting(
        0.2, "a lane change the route requires may point this far off the lane (quicker at low speed)",
        unit="rad", range=(0.0, None))
    route_lane_change_curvature_1pm: float = setting(
        0.06, "a lane change the route requires may start on a curve up to this (a roundabout's ring: 1/20 m)",
        unit="1/m", range=(0.0, None))
    route_lane_change_settled_s: float = setting(
        0.0, "a lane change the route requires starts only once the road has curved less than "
             "route_lane_change_curvature_1pm this long (0: at once); a camera's lane fit that flickers "
             "straight for one frame on a roundabout's ring must not start one there", unit="s",
        range=(0.0, None))
    route_ramp_beside_lateral_m: float = setting(
        0.0, "on an on-ramp (keep_left with no lane perceived left of the ego's), a vehicle numbered in a lane "
             "left of the ego's and more than this far left of its lane's centre is on the road the ramp joins "
             "(0: off, only vehicles on another road are): a camera numbers the lanes it sees beside the ramp "
             "as the ego's road's", unit="m", range=(0.0, None))
    route_exit_speed_mps: float = setting(
        0.0, "take the exit (take_exit) at most this fast: the speed is capped to what braking at "
             "route_exit_braking_mps2 brings down to it by the command's point, and to it for route_exit_hold_s "
             "after (0: off; the curvature ahead caps it): a camera sees the exit's curve too late at highway "
             "speed", unit="m/s", range=(0.0, None))
    route_exit_braking_mps2: float = setting(
        2.0, "the deceleration that speed cap assumes before the exit", unit="m/s^2", range=(0.1, None))
    route_exit_hold_s: float = setting(
        3.0, "the exit's speed cap holds this long past the command's point", unit="s", range=(0.0, None))
    route_branch_lookahead_m: float = setting(
        6.0, "on a ring, steer into the exit this far before it", unit="m", range=(0.0, None))
    route_branch_angle_rad: float = setting(
        0.6, "how sharply the path bends into a ring's exit", unit="rad", range=(0.0, None))
    route_branch_speed_mps: float = setting(
        0.0, "on a ring with take_exit ahead (where the path bends into the exit: route_branch_angle_rad), "
             "slow to this speed by the bend, braking at IDM b (0: off; the exit's bend at ring speed can "
             "carry the car off the road)", unit="m/s", range=(0.0, None))
    route_stop_margin_m: float = setting(
        8.0, "stop this far before the end of a lane the route leaves (an on-ramp's end, the exit's split) "
             "while no gap lets the ego out", unit="m", range=(0.0, None))
    route_stop_braking_mps2: float = setting(
        3.5, "braking for that stop starts when stopping there needs this deceleration (as late as is "
             "comfortable: more time to find a gap)", unit="m/s^2", range=(0.1, None))
    route_junction_stop_margin_m: float = setting(
        4.0, "at a junction (turn_left / turn_right / go_straight) wait this far before the command's point "
             "while crossing or oncoming traffic is about to reach the ego's path", unit="m", range=(0.0, None))
    route_junction_accept_s: float = setting(
        0.5, "crossing / oncoming traffic that reaches the ego's path this long or more after the ego would "
             "have cleared the junction (accelerating at IDM a from its speed) leaves a gap to go",
        unit="s", range=(0.0, None))
    route_junction_range_m: float = setting(
        0.0, "junction traffic is watched from this far before the command's point (0: off, giving way only "
             "by IDM on crossing traffic; 40 trades intersection collisions for waiting: fewer collisions, "
             "more time-ups on held-out seeds)", unit="m", range=(0.0, None))
    junction_clearance_m: float = setting(
        0.8, "with intended paths (the expert at junctions): two paths conflict where they come closer "
             "than half the two widths plus this", unit="m", range=(0.0, None))
    junction_time_margin_s: float = setting(
        1.0, "with intended paths: cross a conflict area only this long before another vehicle can reach "
             "it, or this long after it has left", unit="s", range=(0.0, None))
    junction_merge_gap_s: float = setting(
        1.0, "with intended paths: join another vehicle's path (entering a roundabout) only this long "
             "before it can reach the joining point, or this long after it has passed it", unit="s",
        range=(0.0, None))
    junction_entry_advance_m: float = setting(
        0.0, "with intended paths, at a junction (turn_left / turn_right / go_straight): the yield line may lie "
             "this far past the junction's entry (the turn's point), never inside a conflict area; IDM stops "
             "its jam distance (idm_min_gap_m) before the line: a line farther in leaves less to cross",
        unit="m", range=(0.0, None))
    junction_turn_margin_s: float = setting(
        1.0, "with intended paths, at a junction (turn_left / turn_right / go_straight, until the ego has "
             "cleared it): junction_time_margin_s and junction_merge_gap_s are at most this (a roundabout's "
             "entry keeps those: joining a ring's traffic tighter ends in side collisions)", unit="s",
        range=(0.0, None))
    junction_go_margin_s: float = setting(
        1.0, "with intended paths, at a junction (turn_left / turn_right / go_straight, until the ego has "
             "cleared it): while the ego goes (no yield line the step before) it keeps going when the conflicts "
             "are safe with this margin in place of junction_time_margin_s and junction_merge_gap_s; starting "
             "again needs those (less: a gap once taken is not given up for a small change in another vehicle's "
             "speed, braking hard to stand inside the junction)", unit="s", range=(0.0, None))
    junction_acceleration_mps2: float = setting(
        3.0, "with intended paths, at a junction (turn_left / turn_right / go_straight, until the ego has "
             "cleared it): IDM a there, the brisk acceleration that crosses the gaps the conflict timing "
             "finds (and that it assumes)", unit="m/s^2", range=(0.1, None))
    idm_acceleration_max_mps2: float = setting(
        2.0, "IDM a: comfortable maximum acceleration", unit="m/s^2", range=(0.0, None))
    idm_deceleration_comfort_mps2: float = setting(
        3.0, "IDM b: comfortable deceleration (positive number)", unit="m/s^2", range=(0.0, None))
    idm_time_headway_s: float = setting(1.0, "IDM T: desired time gap to the lead", unit="s", range=(0.0, None))
    idm_min_gap_m: float = setting(4.0, "IDM s0: jam distance bumper to bumper", unit="m", range=(0.0, None))
    idm_delta: float = setting(4.0, "IDM free-road exponent", range=(0.0, None))

    def __post_init__(self) -> None:
        check_fields(self, "planner")  # built in code: the same checks; ints stored as floats

    @property
    def idm(self) -> IDMParams:
        return IDMParams(
            acceleration_max_mps2=self.idm_acceleration_max_mps2,
            deceleration_comfort_mps2=self.idm_deceleration_comfort_mps2,
            time_headway_s=self.idm_time_headway_s,
            min_gap_m=self.idm_min_gap_m,
            delta=self.idm_delta,
        )


def _same_gap(key: object, chosen: object) -> bool:
    """Whether a gap's key (follower id, leader id) is the gap chosen before: the same key, or the
    chosen gap was open on one side (behind the rearmost / ahead of the foremost vehicle) and a
    vehicle has come into range there, bounding the same gap by the same vehicle on the other side."""
    if key == chosen:
        return True
    if not (isinstance(key, tuple) and isinstance(chosen, tuple)):
        return False
    follower, leader = key
    if chosen[0] is None and chosen[1] is not None:
        return bool(chosen[1] == leader)
    if chosen[1] is None and chosen[0] is not None:
        return bool(chosen[0] == follower)
    return False


class RulePlanner:
    """IDM car following + MOBIL-style lane changes + a smooth quintic lane-change path.

    config: a :class:`PlannerConfig` (defaults when None); the agent file's
    ``[params.planner_params]`` table becomes one (``config_class``).
    """

    config_class = PlannerConfig

    def __init__(self, config: PlannerConfig | None = None) -> None:
        self.config = config if config is not None else PlannerConfig()
        self.idm = self.config.idm
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self._y_shift_m = 0.0  # absorbs lane renumbering so y stays continuous
        self._y_prev_m: float | None = None
        self._lc_active = False
        self._lc_for_route = False
        self._lc_retry_side = 0  # a route lane change aborted for a car in the target lane: retry this side
        self._lc_elapsed_s = 0.0
        self._lc_duration_s = self.config.lane_change_duration_s
        self._lc_start_y_m = 0.0
        self._lc_target_y_m = 0.0
        self._lc_start_lane_centre_m = 0.0
        self._since_lane_change_s = 1.0e9
        self._speed_mps = 0.0
        self._route_slot_key: object = None  # the target lane's gap the route's lane change aims for
        self._route_slot_room: tuple[float, float] | None = None  # where in it the ego fits (displacement)
        self._route_ramp_lanes: dict[object, bool] = {}  # track id -> in the lane an on-ramp joins
        self._route_kept_left = False  # keep_left satisfied (a lane with a lane right of it was reached)
        self._junction_past_m: float | None = None  # distance driven past a junction's entry (None: not near one)
        self._junction_going = False  # at a junction, no yield line last step: re-checks use junction_go_margin_s
        self._lane_hold_s = 0.0  # no discretionary lane change for this long (a lead seen braking)
        self._route_settled_s = 0.0  # how long the road has been straight enough for the route's lane change
        self._merge_relax_s: float | None = None  # time since a route lane change started (None: not relaxing)
        self._exit_hold_s = 0.0  # the exit's speed cap holds this long yet (route_exit_speed_mps)
        self._flow_seen_s: dict[int, float] = {}  # lane delta -> how long seen flowing faster (lane_change_flow_hold_s)
        self.lane_changes = 0
        self.aborted_lane_changes = 0

    # ---------------------------------------------------------------- helpers
    def _continuous_y(self, p: PerceptionOutput) -> tuple[float, float]:
        """(y of the ego, y of the current lane centre), continuous across lane ids."""
        w = p.lane_width_m
        lane_id = p.lane_id if p.lane_id is not None else 0
        raw = lane_id * w + p.lateral_offset_m
        if self._y_prev_m is not None:
            jump = raw + self._y_shift_m - self._y_prev_m
            if abs(jump) > 0.6 * w:  # lanes renumbered (lane added/dropped), not a real move
                self._y_shift_m -= round(jump / w) * w
        y = raw + self._y_shift_m
        self._y_prev_m = y
        return y, y - p.lateral_offset_m

    def _occupies(self, v: PerceivedVehicle, delta: int, lane_width_m: float) -> bool:
        """True when ``v`` is in, intrudes into, or is about to cross into lane ``delta``.

        "About to": its tracked lateral speed brings it within the lane's half width plus a
        margin within ``cut_in_horizon_s`` (``crossing_horizon_s`` for a vehicle on a road
        that does not connect to the ego's, e.g. traffic circulating in a roundabout).
        """
        if v.lane_delta == delta:
            return True
        half = 0.5 * lane_width_m + self.config.intrusion_margin_m
        if v.lane_delta is None:  # crossing traffic: keep a wider berth
            half += self.config.crossing_margin_m
        lat = v.lateral_m - delta * lane_width_m
        if abs(lat) < half:
            return True
        speed = v.lateral_speed_mps
        if abs(speed) < 0.3 or lat * speed >= 0.0:  # not moving, or moving away
            return False
        horizon = self.config.cut_in_horizon_s if v.lane_delta is not None else self.config.crossing_horizon_s
        return (abs(lat) - half) / abs(speed) <= horizon

    def _lead_and_follower(
        self, p: PerceptionOutput, delta: int
    ) -> tuple[PerceivedVehicle | None, PerceivedVehicle | None]:
        lead = follower = None
        for v in p.vehicles:
            if self._route_merge_ignores(p, v) or not self._occupies(v, delta, p.lane_width_m):
                continue
            if v.lane_delta is None and v.path_m and p.ego_path_m:
                continue  # junction traffic with intended paths: conflict timing (_route_junction_obstacles)
            if v.lane_delta is not None and p.ego_speed_mps + v.relative_speed_mps < -self.config.oncoming_speed_mps:
                # "oncoming" on a connected one-way lane: a projection artefact (e.g. a vehicle
                # across a circuit's loop measured on the ego lane's extension), not traffic
                continue
            if v.lane_delta is None:
                # on a road that does not connect to the ego's (junction traffic): only its motion
                # along the ego lane counts, and crossing traffic is a conflict point that stays put
                along = max(p.ego_speed_mps + v.relative_speed_mps, 0.0)
                v = replace(v, relative_speed_mps=along - p.ego_speed_mps)
            if v.gap_m >= 0.0:
                if lead is None or v.gap_m < lead.gap_m:
                    lead = v
            elif follower is None or v.gap_m > follower.gap_m:
                follower = v
        return lead, follower

    def _idm(self, p: PerceptionOutput, target_speed_mps: float, lead: PerceivedVehicle | None) -> float:
        if lead is None:
            return self.idm.acceleration(p.ego_speed_mps, target_speed_mps, None)
        return self.idm.acceleration(p.ego_speed_mps, target_speed_mps, lead.gap_m, lead.relative_speed_mps)

    def _merge_idm(self) -> IDMParams | None:
        """IDM with the relaxed headway behind the new lead of a route lane change (None: not relaxing).

        A merge accepts a gap tighter than IDM's desired one (the gap acceptance's front room); IDM
        at full T would brake hard into it, the new follower would close in, and the lane change
        would be aborted. Drivers relax instead (Laval & Leclercq 2008): the headway grows from
        ``route_merge_headway_fraction`` x T back to T over ``route_merge_relax_s``."""
        if self._merge_relax_s is None:
            return None
        cfg = self.config
        fraction = min(1.0, cfg.route_merge_headway_fraction
                       + (1.0 - cfg.route_merge_headway_fraction) * self._merge_relax_s / cfg.route_merge_relax_s)
        return replace(self.idm, time_headway_s=self.idm.time_headway_s * fraction)

    def _follower_acceleration(self, p: PerceptionOutput, follower: PerceivedVehicle, lead_gap_m: float,
                               lead_speed_mps: float) -> float:
        """Interaction term of IDM for a follower behind a lead at ``lead_gap_m`` (bumper gap)."""
        v_f = max(p.ego_speed_mps + follower.relative_speed_mps, 0.0)
        s_star = self.idm.desired_gap_m(v_f, v_f - lead_speed_mps)
        return -self.idm.acceleration_max_mps2 * (s_star / max(lead_gap_m, 0.1)) ** 2

    def target_speed(self, p: PerceptionOutput) -> float:
        """Cruise speed capped by the speed limit and by the curvature here and ahead (of the lane; with
        the ego's route ahead, ``ego_path_m``, :func:`path_speed_cap` caps it by the path's bends instead:
        the lane through a junction still curves where the ego is already leaving it on the straight)."""
        v = self.config.cruise_speed_mps
        if p.speed_limit_mps is not None and p.speed_limit_mps > 0:
            v = min(v, p.speed_limit_mps)
        kappa = max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm))
        if kappa > 1e-4 and len(p.ego_path_m) < 3:
            v = min(v, math.sqrt(self.config.max_lateral_acceleration_mps2 / kappa))
        return v

    @staticmethod
    def _target_lane_seen_clear(p: PerceptionOutput, delta: int) -> bool:
        """Side cameras: the target lane's conflict zone was seen clear lately (no gate without them)."""
        return p.lane_seen_clear(delta) is not False

    def lane_change_safe(self, p: PerceptionOutput, delta: int, max_imposed_braking_mps2: float | None = None) -> bool:
        """Gaps in lane ``delta`` (and no one about to move into it) allow the ego in.

        max_imposed_braking_mps2: the new follower's braking limit (default: the setting's; a lane
        change the route requires accepts a harder one, ``route_max_imposed_braking_mps2``).
        """
        if not self._target_lane_seen_clear(p, delta):
            return False
        imposed = self.config.max_imposed_braking_mps2 if max_imposed_braking_mps2 is None else max_imposed_braking_mps2
        v_ego = p.ego_speed_mps
        w = p.lane_width_m
        lead, follower = self._lead_and_follower(p, delta)
        if lead is not None:
            closing = -lead.relative_speed_mps
            if lead.gap_m < max(self.config.min_front_gap_m, 0.5 * v_ego):
                return False
            if closing > 0 and lead.gap_m / closing < self.config.min_front_ttc_s:
                return False
            if lead.is_static and lead.gap_m < 3.0 * max(v_ego, 1.0):
                return False
        if follower is not None:
            gap_behind = -follower.gap_m
            closing = follower.relative_speed_mps
            if gap_behind < max(self.config.min_rear_gap_m, 0.3 * v_ego):
                return False
            if closing > 0 and gap_behind / closing < self.config.min_rear_ttc_s:
                return False
            if self._follower_acceleration(p, follower, gap_behind, v_ego) < -imposed:
                return False
        # someone two lanes over, near and drifting towards the same lane
        for v in p.vehicles:
            if v.lane_delta == 2 * delta and abs(v.gap_m) < max(15.0, 0.8 * v_ego):
                offset_in_own_lane = v.lateral_m - v.lane_delta * w
                if offset_in_own_lane * (-delta) > 0.4:  # shifted towards the ego side
                    return False
        return True

    def _mobil_gain(self, p: PerceptionOutput, delta: int, v0: float, a_here: float) -> float:
        lead_new, follower_new = self._lead_and_follower(p, delta)
        a_there = self._idm(p, v0, lead_new)
        gain = a_there - a_here
        if self.config.lane_speed_gain_per_s > 0.0:
            # IDM alone sees no gain between two lanes that both follow someone; also value how
            # fast each lane flows (its lead's speed, or the target speed when free within range)
            lead_here, _ = self._lead_and_follower(p, 0)
            gain += self.config.lane_speed_gain_per_s * (self._lane_flow_mps(p, lead_new, v0)
                                                  - self._lane_flow_mps(p, lead_here, v0))
        if self.config.politeness > 0.0 and follower_new is not None:
            # braking the new follower would have to do behind the ego (only the change counts)
            before = (self._follower_acceleration(p, follower_new, lead_new.gap_m - follower_new.gap_m + 5.0,
                                                  p.ego_speed_mps + lead_new.relative_speed_mps)
                      if lead_new is not None else 0.0)
            after = self._follower_acceleration(p, follower_new, -follower_new.gap_m, p.ego_speed_mps)
            gain += self.config.politeness * (after - before)
        if delta > 0:
            gain += self.config.keep_right_bias_mps2
        return gain

    def _flows_faster(self, p: PerceptionOutput, delta: int, v0: float) -> bool:
        """Lane ``delta`` flows ``lane_change_min_flow_gain_mps`` faster than the ego's (True when off), and
        has for ``lane_change_flow_hold_s`` (:meth:`_update_flow_seen`)."""
        if self.config.lane_change_min_flow_gain_mps <= 0.0:
            return True
        return self._flow_seen_s.get(delta, 0.0) >= self.config.lane_change_flow_hold_s

    def _update_flow_seen(self, p: PerceptionOutput, v0: float, dt_s: float) -> None:
        """How long each neighbour lane has been seen flowing ``lane_change_min_flow_gain_mps`` faster than
        the ego's (with a lead whose tracked acceleration is below ``lane_change_flow_max_accel_mps2``)."""
        needed = self.config.lane_change_min_flow_gain_mps
        if needed <= 0.0:
            return
        here, _ = self._lead_and_follower(p, 0)
        flow_here = self._lane_flow_mps(p, here, v0)
        max_accel = self.config.lane_change_flow_max_accel_mps2
        for delta in (-1, 1):
            there, _ = self._lead_and_follower(p, delta)
            faster = self._lane_flow_mps(p, there, v0) - flow_here >= needed
            if (faster and max_accel > 0.0 and there is not None and there.acceleration_mps2 is not None
                    and there.gap_m <= self.config.lane_flow_range_m and abs(there.acceleration_mps2) >= max_accel):
                faster = False
            self._flow_seen_s[delta] = self._flow_seen_s.get(delta, -dt_s) + dt_s if faster else -dt_s

    def _lane_flow_mps(self, p: PerceptionOutput, lead: PerceivedVehicle | None, v0: float) -> float:
        if lead is None or lead.gap_m > self.config.lane_flow_range_m:
            return v0
        return min(v0, max(p.ego_speed_mps + lead.relative_speed_mps, 0.0))

    def _lane_change_duration_s(self, lateral_m: float, speed_mps: float, minimum_s: float,
                                max_heading_rad: float | None = None) -> float:
        """At least ``minimum_s``, and long enough that the path's peak heading stays small.

        The quintic's peak lateral speed is 1.875 * lateral / T; at low speed (racetrack,
        roundabout) a 3 s change would point the ego 0.3 rad off the lane.
        """
        v = max(speed_mps, 1.0)
        heading = self.config.max_lane_change_heading_rad if max_heading_rad is None else max_heading_rad
        return max(minimum_s, 1.875 * abs(lateral_m) / (v * math.tan(heading)))

    def _start_lane_change(self, y: float, lane_centre: float, delta: int, w: float, duration_s: float) -> None:
        self._lc_for_route = False  # set by the caller when the route asked for it
        self._lc_active = True
        self._lc_elapsed_s = 0.0
        target = lane_centre + delta * w
        duration_s = self._lane_change_duration_s(target - y, self._speed_mps, duration_s)
        self._lc_duration_s = duration_s
        self._lc_start_y_m = y
        self._lc_start_lane_centre_m = lane_centre
        self._lc_target_y_m = target

    def _start_route_lane_change(self, p: PerceptionOutput, y: float, lane_centre: float, delta: int, w: float,
                                 v_ego: float) -> None:
        self.lane_changes += 1
        self._start_lane_change(y, lane_centre, delta, w, self.config.route_lane_change_duration_s)
        self._lc_for_route = True
        self._lc_retry_side = 0
        self._lc_duration_s = self._route_lane_change_duration_s(p, self._lc_target_y_m - y, v_ego)
        self._merge_relax_s = 0.0

    # ------------------------------------------------------------- route following
    @staticmethod
    def route_side(p: PerceptionOutput) -> int:
        """The side the satnav command wants the ego on: -1 left, +1 right, 0 no preference.

        keep_left: out of the rightmost lane (a lane that ends: an on-ramp); keep_right and
        take_exit: into the rightmost lane (an exit leaves from it, also a roundabout's).
        """
        if p.command == "keep_left":
            return -1
        if p.command in ("keep_right", "take_exit"):
            return 1
        return 0

    def route_lanes_to_cross(self, p: PerceptionOutput) -> int:
        """Lanes the ego must still cross for the command (0: in a lane it allows)."""
        side = self.route_side(p)
        if side > 0:
            return p.lanes_right
        if side < 0:
            if self._route_kept_left:
                return 0  # already out of the ramp's lane once: the road past its end is fine
            return 1 if (p.lanes_right == 0 and p.lanes_left >= 1) else 0
        return 0

    def _route_straight_enough(self, p: PerceptionOutput) -> bool:
        # speed caps and stop lines only on a nearly straight road (not in a roundabout's ring)
        return max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm)) <= self.config.max_lane_change_curvature_1pm

    def _route_lane_change_curvature_ok(self, p: PerceptionOutput) -> bool:
        # a lane change the route requires may happen on a tighter curve (to the outer lane of a ring)
        return max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm)) <= self.config.route_lane_change_curvature_1pm

    def _route_speed_cap(self, p: PerceptionOutput, lanes: int) -> float | None:
        """A speed that leaves ``route_time_per_lane_s`` per lane still to cross before the point."""
        if lanes <= 0 or not math.isfinite(p.command_distance_m) or not self._route_straight_enough(p):
            return None
        return max(self.config.route_min_speed_mps, p.command_distance_m / (lanes * self.config.route_time_per_lane_s))

    def _route_exit_speed_cap(self, p: PerceptionOutput, dt_s: float) -> float | None:
        """The speed cap before and just past an exit (``route_exit_speed_mps``; None: off or no exit near)."""
        cfg = self.config
        if cfg.route_exit_speed_mps <= 0.0:
            return None
        if p.command == "take_exit" and math.isfinite(p.command_distance_m):
            self._exit_hold_s = cfg.route_exit_hold_s
            distance = max(p.command_distance_m, 0.0)
            return speed_braking_to(cfg.route_exit_speed_mps, cfg.route_exit_braking_mps2, distance)
        if self._exit_hold_s > 0.0:
            self._exit_hold_s -= dt_s
            return cfg.route_exit_speed_mps
        return None

    def _route_stop_line(self, p: PerceptionOutput, lanes: int) -> PerceivedVehicle | None:
        """A virtual standing obstacle at the end of the lane the route leaves (keep_left: the on-ramp
        ends there; take_exit: the exit splits off there), while the ego is still in the wrong lane."""
        if lanes <= 0 or p.command not in ("keep_left", "take_exit") or not math.isfinite(p.command_distance_m):
            return None
        if not self._route_straight_enough(p):
            return None
        gap = p.command_distance_m - self.config.route_stop_margin_m
        if gap > p.ego_speed_mps ** 2 / (2.0 * self.idm.deceleration_comfort_mps2) + self.config.route_stop_margin_m:
            return None  # far enough to stop comfortably later: no need to slow yet
        return PerceivedVehicle(lane_delta=0, gap_m=max(gap, 0.0), relative_speed_mps=-p.ego_speed_mps,
                                lateral_m=0.0, is_static=True)

    def _route_stop_acceleration(self, p: PerceptionOutput, v0: float, line: PerceivedVehicle) -> float:
        """Braking for the stop line as late as is comfortable: nothing until stopping at the line needs
        ``route_stop_braking_mps2``, then the constant deceleration that stops the ego there; IDM on it
        within a few metres (creeping up and holding). IDM on a standing obstacle brakes from far and
        hard: on an on-ramp's short lane that ended the wait for a gap before the ramp's end."""
        v = max(p.ego_speed_mps, 0.0)
        if line.gap_m < 3.0:
            return self._idm(p, v0, line)
        needed = v * v / (2.0 * line.gap_m)
        return -needed if needed >= self.config.route_stop_braking_mps2 else math.inf

    def _route_junction_stop_line(self, p: PerceptionOutput) -> PerceivedVehicle | None:
        """Giving way at a junction: a virtual standing obstacle ``route_junction_stop_margin_m`` before the
        command's point while a vehicle on another road is about to cross the ego's path (its tracked
        lateral motion reaches the ego's lane within ``route_junction_accept_s``) or, turning left, an
        oncoming vehicle reaches the junction within that time. None once the ego is past the line or
        could not stop before it comfortably (it then clears the junction)."""
        cfg = self.config
        if (p.command not in ("turn_left", "turn_right", "go_straight") or not math.isfinite(p.command_distance_m)
                or p.ego_path_m):  # (with intended paths, conflict timing gives way: _route_junction_obstacles)
            return None
        gap = p.command_distance_m - cfg.route_junction_stop_margin_m
        v_ego = max(p.ego_speed_mps, 0.0)
        if gap < 0.0 or gap > cfg.route_junction_range_m or v_ego * v_ego > 2.0 * cfg.comfort_braking_mps2 * max(gap, 0.1):
            return None
        w = p.lane_width_m
        a = max(self.idm.acceleration_max_mps2, 0.1)

        def accept(across_lanes: float) -> float:
            # time to clear the conflict (to the command's point and ``across_lanes`` lane widths on,
            # accelerating from the ego's speed) plus the margin
            distance = p.command_distance_m + across_lanes * w
            return (-v_ego + math.sqrt(v_ego * v_ego + 2.0 * a * distance)) / a + cfg.route_junction_accept_s

        # lane widths into the junction where the ego's path leaves the lane of traffic from the left /
        # from the right (right-hand traffic: the near lane carries traffic from the left); None: no conflict
        from_left = 3.0
        from_right = {"turn_left": 5.0, "go_straight": 4.0, "turn_right": None}[p.command]
        for v in p.vehicles:
            if v.lane_delta is not None or v.is_static:
                continue
            along = p.ego_speed_mps + v.relative_speed_mps
            if p.command == "turn_left" and -1.6 * w < v.lateral_m < -0.4 * w and along < -1.0:
                # oncoming, towards the junction the ego turns across
                to_conflict = v.gap_m - (p.command_distance_m + 2.0 * w)
                if to_conflict > -1.0 * w and to_conflict / -along < accept(3.5):
                    break
                continue
            if not (p.command_distance_m - 2.0 * w < v.gap_m < p.command_distance_m + 6.0 * w):
                continue  # not at the junction
            lat = abs(v.lateral_m)
            if lat < 0.5 * w + cfg.crossing_margin_m:
                break  # in the ego's path right now
            speed = v.lateral_speed_mps
            lanes = from_left if v.lateral_m < 0.0 else from_right
            if (lanes is not None and v.lateral_m * speed < 0.0 and abs(speed) > 1.0
                    and (lat - w) / abs(speed) < accept(lanes)):
                break  # about to cross
        else:
            return None
        return PerceivedVehicle(lane_delta=0, gap_m=gap, relative_speed_mps=-p.ego_speed_mps, lateral_m=0.0,
                                is_static=True)

    def _route_junction_obstacles(self, p: PerceptionOutput, v0: float, dt_s: float) -> list[PerceivedVehicle]:
        """With intended paths (privileged): the yield line and path leads of conflict-zone timing
        (:func:`e2e_drive.agents.modular.junction.junction_obstacles`); empty without them. Past a
        junction's entry (the turn's point, for JUNCTION_PAST_M) the ego clears the junction."""
        if p.command in JUNCTION_COMMANDS and math.isfinite(p.command_distance_m) \
                and (p.command_distance_m > 0.0 or self._junction_past_m is None):
            self._junction_past_m = 0.5 * p.ego_length_m - p.command_distance_m
        elif self._junction_past_m is not None:  # (the satnav's distance stays 0 just past the point)
            self._junction_past_m += max(p.ego_speed_mps, 0.0) * dt_s
            if self._junction_past_m > JUNCTION_PAST_M:
                self._junction_past_m = None
        if self._junction_past_m is None:
            self._junction_going = False
        if not p.ego_path_m:
            return []
        cfg = self.config
        margin, merge_gap = cfg.junction_time_margin_s, cfg.junction_merge_gap_s
        if self._junction_past_m is not None:  # at a junction's turn
            margin, merge_gap = min(margin, cfg.junction_turn_margin_s), min(merge_gap, cfg.junction_turn_margin_s)
        if self._junction_going:
            margin, merge_gap = min(margin, cfg.junction_go_margin_s), min(merge_gap, cfg.junction_go_margin_s)
        obstacles = junction_obstacles(p, JunctionSettings(
            clearance_m=cfg.junction_clearance_m, time_margin_s=margin, merge_gap_s=merge_gap,
            ego_acceleration_mps2=self.idm.acceleration_max_mps2,  # (see plan)
            ego_speed_mps=max(v0, 1.0), max_lateral_acceleration_mps2=cfg.max_lateral_acceleration_mps2,
            commit_braking_mps2=cfg.max_braking_mps2, entry_advance_m=cfg.junction_entry_advance_m),
            inside=self._junction_past_m is not None and self._junction_past_m > cfg.junction_entry_advance_m)
        # hysteresis: going on needs the conflicts safe with junction_go_margin_s, starting (again) the full margins
        self._junction_going = self._junction_past_m is not None and not any(o.is_static for o in obstacles)
        return obstacles

    def _junction_idm(self, p: PerceptionOutput) -> IDMParams:
        """IDM's parameters for this step: a is junction_acceleration_mps2 at a junction with intended
        paths (from the turn's command until JUNCTION_PAST_M past its entry), the configured a elsewhere."""
        idm = self.config.idm
        at_junction = (p.command in JUNCTION_COMMANDS and math.isfinite(p.command_distance_m)) \
            or self._junction_past_m is not None
        if p.ego_path_m and at_junction:
            return replace(idm, acceleration_max_mps2=self.config.junction_acceleration_mps2)
        return idm

    def _route_lane_change(self, p: PerceptionOutput) -> int:
        """The lane change the route asks for now (a delta of -1 / +1, or 0): only when it is safe."""
        side = self.route_side(p)
        if (side == 0 or self.route_lanes_to_cross(p) <= 0 or not (p.lane_valid and p.vehicles_valid)
                or p.lane_id is None or p.lanes_count is None
                or (abs(p.lateral_offset_m) >= 0.5 and p.lateral_offset_m * side < 0.0)  # (already drifting its way: go)
                or self._since_lane_change_s < self.config.route_lane_change_rest_s
                or not self._route_lane_change_curvature_ok(p)
                or self._route_settled_s < self.config.route_lane_change_settled_s):
            return 0
        # last step's gap acceptance: wait until alongside the gap chosen, unless the lane's end is near
        # (stopping for it has begun: any gap the check lets the ego into will do)
        room = self._route_slot_room
        if (room is not None and not room[0] <= 0.0 <= room[1]
                and self._route_stop_line(p, self.route_lanes_to_cross(p)) is None):
            return 0
        return side if self.lane_change_safe(p, side, self.config.route_max_imposed_braking_mps2) else 0

    def _route_lane_change_duration_s(self, p: PerceptionOutput, lateral_m: float, speed_mps: float) -> float:
        """A route lane change's duration: heading-limited (``route_lane_change_heading_rad``), but where
        the lane being left ends (keep_left / take_exit) done before its end, turning up to twice as
        sharply if it must (slow at an on-ramp's end, a 0.2 rad change would run past it)."""
        cfg = self.config
        duration = self._lane_change_duration_s(lateral_m, speed_mps, cfg.route_lane_change_duration_s,
                                                cfg.route_lane_change_heading_rad)
        if p.command not in ("keep_left", "take_exit") or not math.isfinite(p.command_distance_m) \
                or not self._route_straight_enough(p):
            return duration
        fits = (p.command_distance_m - 2.0) / max(speed_mps, 1.0)
        sharpest = self._lane_change_duration_s(lateral_m, speed_mps, 1.0, 2.0 * cfg.route_lane_change_heading_rad)
        return max(min(duration, fits), sharpest)

    def _route_gap_speed(self, p: PerceptionOutput, lanes: int) -> float | None:
        """While the route's lane change waits (or, on an on-ramp, before the lanes join): the speed
        that brings the ego alongside a gap of the target lane it could take (:meth:`_route_slot`):
        the gap's speed plus a term that closes the distance to the gap's safe middle.
        None: no one there to match, or no change pending."""
        side = self.route_side(p)
        on_ramp = p.command == "keep_left" and p.lanes_left == 0 and p.lanes_right == 0
        if side == 0 or not (lanes > 0 or on_ramp) or not self._route_straight_enough(p):
            self._route_slot_key = self._route_slot_room = None
            return None
        if on_ramp:
            others = self._route_ramp_target_lane(p)
        else:
            others = [v for v in p.vehicles if v.lane_delta == side]
        slot = self._route_slot(p, [v for v in others if not v.is_static and abs(v.gap_m) < 100.0])
        if slot is None:
            return None
        shift_m, flow = slot
        faster, slower = self._route_gap_offsets(self._route_deadline_s(p), flow, abs(shift_m))
        # proportional, but never faster relative to the gap than lets the ego match its speed on arrival
        # (speeding back up at 0.8 IDM a after dropping back, braking at 0.8 IDM b after catching up)
        rate = 0.8 * (self.idm.acceleration_max_mps2 if shift_m < 0.0 else self.idm.deceleration_comfort_mps2)
        rel = min(self.config.route_gap_gain_per_s * abs(shift_m), math.sqrt(2.0 * rate * abs(shift_m)))
        return max(flow + float(np.clip(math.copysign(rel, shift_m), -slower, faster)), 0.0)

    def _route_deadline_s(self, p: PerceptionOutput) -> float:
        """Time left before the route's lane change must begin: the lane the ego leaves ends at the
        command's point (keep_left: an on-ramp or a closed lane; take_exit: the exit's split), less the
        stop margin and a lane change's length at the ego's speed. inf where no lane ends."""
        if p.command not in ("keep_left", "take_exit") or not math.isfinite(p.command_distance_m):
            return math.inf
        v = max(p.ego_speed_mps, 1.0)
        room = p.command_distance_m - self.config.route_stop_margin_m - v * self.config.route_lane_change_duration_s
        return max(room, 0.0) / v

    def _route_gap_offsets(self, deadline_s: float, flow_mps: float, distance_m: float) -> tuple[float, float]:
        """(how much faster, how much slower) than a gap the ego may drive to come alongside it
        ``distance_m`` away: ``route_gap_speed_offset_mps`` (twice that slower), more where the lane's end
        (``deadline_s``: :meth:`_route_deadline_s`) leaves too little time at those, up to the cruise speed
        and ``route_gap_max_slower_mps``."""
        cfg = self.config
        faster, slower = cfg.route_gap_speed_offset_mps, 2.0 * cfg.route_gap_speed_offset_mps
        if math.isfinite(deadline_s):
            need = distance_m / max(deadline_s, 0.5)
            faster = max(faster, min(need, cfg.cruise_speed_mps - flow_mps))
            slower = max(slower, min(need, cfg.route_gap_max_slower_mps, flow_mps - cfg.route_min_speed_mps))
        return max(faster, 0.1), max(slower, 0.1)

    def _route_ramp_target_lane(self, p: PerceptionOutput) -> list[PerceivedVehicle]:
        """On an on-ramp, before the lanes join: the vehicles of the lane the ramp joins (the nearest
        lane of the road beside). Where the ramp is straight, lateral positions tell the lanes apart
        and each track's lane is remembered; where the ramp bends towards the road, a lateral is
        measured from the ramp's centre at the vehicle's own station (lanes ahead and behind look
        nearer or farther), so remembered tracks keep their lane and only new ones are placed by
        their lateral."""
        w = p.lane_width_m
        beside = [v for v in p.vehicles if self._route_merge_ignores(p, v) and not v.is_static]
        if max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm)) < 1.0e-4:
            nearest_lane_m = max((v.lateral_m for v in beside), default=0.0)  # the lane the ramp joins
            target = [v for v in beside if v.lateral_m > nearest_lane_m - 0.5 * w]
            self._route_ramp_lanes.update({v.track_id: v in target for v in beside if v.track_id is not None})
            return target
        known = self._route_ramp_lanes
        placed = [v for v in beside if v.track_id in known]
        nearest_lane_m = max((v.lateral_m for v in beside if v not in placed), default=0.0)
        return [v for v in beside if known.get(v.track_id, v.lateral_m > nearest_lane_m - 0.5 * w)]

    def _route_slot(self, p: PerceptionOutput, others: list[PerceivedVehicle]) -> tuple[float, float] | None:
        """Gap acceptance for the route's lane change: among the gaps of the target lane (between
        consecutive ``others``, ahead of the first, behind the last) the ones that fit the ego with
        the room the lane change check asks (the new follower braking at most
        ``route_max_imposed_braking_mps2`` at the gap's speed, the front gap floor, a margin), the one
        nearest once the ego has matched the gap's speed (a slower ego drops back for free); the gap
        chosen before is kept while it still fits and is not much farther (no dithering between two).
        Returns (how far the ego must move along to the gap's safe middle [m], the gap's speed), or
        None when no one is there."""
        if not others:
            self._route_slot_key = self._route_slot_room = None
            return None
        cfg = self.config
        ego_len = _EGO_LENGTH_M
        v_ego = max(p.ego_speed_mps, 0.0)
        others = sorted(others, key=lambda v: v.gap_m)

        def centre(v: PerceivedVehicle) -> float:  # centre-to-centre distance along the lane
            if v.longitudinal_m is not None:
                return v.longitudinal_m
            half = 0.5 * (ego_len + v.length_m)
            return v.gap_m + half if v.gap_m >= 0.0 else v.gap_m - half

        def speed(v: PerceivedVehicle) -> float:
            return max(v_ego + v.relative_speed_mps, 0.0)

        root = math.sqrt(self.idm.acceleration_max_mps2 / max(cfg.route_max_imposed_braking_mps2, 0.1))

        def rear_room(v: PerceivedVehicle) -> float:  # behind the ego for a follower at its speed
            u = speed(v)
            return max(cfg.min_rear_gap_m, 0.3 * u, (self.idm.min_gap_m + u * self.idm.time_headway_s) * root)

        def front_room(u: float) -> float:
            return max(cfg.min_front_gap_m, 0.5 * u)

        margin = cfg.route_slot_margin_m
        deadline = self._route_deadline_s(p)
        # (key, lowest and highest displacement of the ego that fit, the gap's speed)
        slots: list[tuple[object, float, float, float]] = []
        first, last = others[0], others[-1]
        slots.append(((None, first.track_id), -math.inf,
                      centre(first) - 0.5 * (ego_len + first.length_m) - front_room(speed(first)), speed(first)))
        slots.append(((last.track_id, None), centre(last) + 0.5 * (ego_len + last.length_m) + rear_room(last),
                      math.inf, speed(last)))
        for behind, ahead in zip(others[:-1], others[1:]):
            flow = speed(behind)  # (the follower's braking is what the lane change check weighs most)
            lo = centre(behind) + 0.5 * (ego_len + behind.length_m) + rear_room(behind)
            hi = centre(ahead) - 0.5 * (ego_len + ahead.length_m) - front_room(flow)
            slots.append(((behind.track_id, ahead.track_id), lo, hi, flow))
        best: tuple[float, float, float, object, float, float] | None = None
        kept: tuple[float, float, float, object, float, float] | None = None
        for key, lo, hi, flow in slots:
            chosen = _same_gap(key, self._route_slot_key)
            if hi - lo < (0.0 if chosen else margin):  # (the chosen gap: while it fits)
                continue
            room = hi - lo  # (inf for the gap ahead of or behind all of them)
            inside = min(max(margin, 0.25 * room), 0.5 * room) if math.isfinite(room) else 2.0 * margin
            target = float(np.clip(0.0, lo + inside, hi - inside))
            # matching the gap's speed (at IDM b or a) moves the ego this far along relative to the gap;
            # then the time to come alongside (at most ``route_gap_speed_offset_mps`` faster than the gap,
            # twice that slower)
            dv = v_ego - flow
            rate = self.idm.deceleration_comfort_mps2 if dv > 0.0 else self.idm.acceleration_max_mps2
            drift = dv * abs(dv) / (2.0 * max(rate, 0.1))
            offset = max(cfg.route_gap_speed_offset_mps, 0.1)
            cost = (target - drift) / offset if target > drift else (drift - target) / (2.0 * offset)
            # reachable before the lane's end at the widest offsets allowed? (unreachable gaps rank last)
            faster, slower = self._route_gap_offsets(deadline, flow, abs(target - drift))
            reach = (target - drift) / faster if target > drift else (drift - target) / slower
            late = reach > deadline
            entry = (cost + (1.0e6 + reach if late else 0.0), target, flow, key, lo, hi)
            if best is None or entry[0] < best[0]:
                best = entry
            if chosen:
                kept = entry
        if best is None:
            self._route_slot_key = self._route_slot_room = None
            return None
        if kept is not None and kept[0] <= best[0] + cfg.route_slot_keep_s:
            best = kept
        self._route_slot_key, self._route_slot_room = best[3], (best[4], best[5])
        return best[1], best[2]

    def _route_branch_speed_cap(self, p: PerceptionOutput) -> float | None:
        """The speed from which the ego slows to route_branch_speed_mps by the bend into a ring's exit
        (braking at IDM b); None where no such bend is ahead or the cap is off."""
        cfg = self.config
        if (cfg.route_branch_speed_mps <= 0.0 or p.command != "take_exit" or self._route_straight_enough(p)
                or not math.isfinite(p.command_distance_m)):
            return None
        room = max(p.command_distance_m - cfg.route_branch_lookahead_m, 0.0)
        return speed_braking_to(cfg.route_branch_speed_mps, self.idm.deceleration_comfort_mps2, room)

    def _route_branch_offsets(self, p: PerceptionOutput, s_m: np.ndarray) -> np.ndarray:
        """Path offsets that steer into a roundabout's exit: on a ring (curved beyond lane changes) with
        take_exit close ahead, the path bends right past the exit's start (the exit leaves the
        outer lane at a sharp angle; following the ring's lane would circle past it)."""
        if (p.command != "take_exit" or self._route_straight_enough(p) or p.lanes_right > 0
                or p.command_distance_m > self.config.route_branch_lookahead_m):
            return np.zeros_like(s_m)
        beyond = np.maximum(s_m - p.command_distance_m, 0.0)
        return np.minimum(beyond * math.tan(self.config.route_branch_angle_rad), p.lane_width_m)

    def _route_merge_ignores(self, p: PerceptionOutput, v: PerceivedVehicle) -> bool:
        """On an on-ramp (keep_left), traffic beside the ego on the road it merges into is not
        crossing traffic to yield to: the ramp converges with it; the merge's gap acceptance
        handles it once the lanes join (only vehicles still beside the ego's lane are ignored).
        On a one-lane ramp a vehicle seen beside it earlier stays beside it where the road's
        segments change (a lane id on the next segment is not the ramp's lane)."""
        if p.command != "keep_left":
            return False
        if v.lane_delta is None and v.lateral_m < -0.75 * p.lane_width_m:
            return True
        beside_m = self.config.route_ramp_beside_lateral_m
        if (beside_m > 0.0 and p.lanes_left == 0 and v.lane_delta is not None and v.lane_delta < 0
                and v.lateral_m < -beside_m):
            return True
        return p.lanes_count == 1 and v.track_id is not None and v.track_id in self._route_ramp_lanes

    def _route_leaving_lane_ignores(self, p: PerceptionOutput, delta: int, target_delta: int,
                                    lead: PerceivedVehicle) -> bool:
        """While a lane change the route requires is under way, the lead of the lane being left (the
        end of an on-ramp) matters only once it is within the strongest braking's stopping distance.
        Before the change, a standing object where the lane the route leaves ends (merge-v0 marks an
        on-ramp's end with one) is left to the stop line (:meth:`_route_stop_line`, which stops the
        ego before it): IDM on it would slow the ego below the traffic it must merge into."""
        if (not self._lc_active and delta == 0 and lead.is_static and p.command in ("keep_left", "take_exit")
                and self.route_lanes_to_cross(p) > 0 and math.isfinite(p.command_distance_m)
                and lead.gap_m >= p.command_distance_m - self.config.route_stop_margin_m):
            return True
        if not (self._lc_active and self._lc_for_route):
            return False
        lane_centre = (self._y_prev_m if self._y_prev_m is not None else 0.0) - p.lateral_offset_m
        leaving = int(round((self._lc_start_lane_centre_m - lane_centre) / max(p.lane_width_m, 0.1)))
        if delta != leaving or delta == target_delta:  # (the lane being left: 0, then +-1 once across the line)
            return False
        v = max(p.ego_speed_mps, 0.0)
        if lead.gap_m > v * v / (2.0 * self.config.max_braking_mps2) + self.idm.min_gap_m:
            return True
        # nearer: still ignored when the lane change's path is clear of it by the time the ego gets there
        # (a closure's taper of cones along the lane's far side)
        tau = (self._lc_elapsed_s + lead.gap_m / max(v, 1.0)) / max(self._lc_duration_s, 1e-3)
        y_then = self._lc_start_y_m + (self._lc_target_y_m - self._lc_start_y_m) * quintic_blend(tau)
        lead_y = lane_centre + lead.lateral_m
        half_widths = 1.0 + (0.25 if lead.is_static and lead.length_m < 1.0 else 1.0)
        return abs(y_then - lead_y) > half_widths + self.config.intrusion_margin_m

    # ------------------------------------------------------------------ plan
    def _update_lane_hold(self, p: PerceptionOutput, dt_s: float) -> None:
        """While the ego lane's lead is tracked braking harder than ``lane_change_lead_braking_mps2`` (when
        set), and for LANE_HOLD_S after (a tracked acceleration is noisy), the ego stays in its lane and
        brakes: no discretionary lane change (``_lane_hold_s`` > 0)."""
        self._lane_hold_s = max(self._lane_hold_s - dt_s, 0.0)
        limit = self.config.lane_change_lead_braking_mps2
        if limit <= 0.0:
            return
        lead, _ = self._lead_and_follower(p, 0)
        if (lead is not None and lead.acceleration_mps2 is not None and -lead.acceleration_mps2 > limit
                and lead.gap_m <= max(p.ego_speed_mps, 0.0) * self.config.lane_change_lead_braking_headway_s):
            self._lane_hold_s = LANE_HOLD_S

    def _lead_stop_braking(self, p: PerceptionOutput, lead: PerceivedVehicle, dt_s: float) -> float | None:
        """The braking [m/s^2, positive] that stops the ego behind where a braking lead will stop.

        None unless perception tracks the lead's acceleration and it brakes harder than
        ``lead_braking_min_mps2``. Both are taken to brake at a constant rate; the ego's command
        is held for ``dt_s`` first (its reaction), and ``lead_stop_margin_m`` is kept.
        """
        a_lead = lead.acceleration_mps2
        if a_lead is None or lead.lane_delta is None or -a_lead <= self.config.lead_braking_min_mps2:
            return None
        v_ego = max(p.ego_speed_mps, 0.0)
        if v_ego <= 0.0:
            return None
        v_lead = max(v_ego + lead.relative_speed_mps, 0.0)
        a_lead = a_lead * self.config.lead_braking_scale
        room = lead.gap_m + v_lead * v_lead / (-2.0 * a_lead) - self.config.lead_stop_margin_m - v_ego * dt_s
        if room <= 0.0:
            return float("inf")
        return v_ego * v_ego / (2.0 * room)

    def plan(self, perception: PerceptionOutput, dt_s: float) -> Plan:
        p = perception
        w = p.lane_width_m
        v_ego = max(p.ego_speed_mps, 0.0)
        self._speed_mps = v_ego
        self.idm = self._junction_idm(p)
        v0 = self.target_speed(p)
        v0 = min(v0, path_speed_cap(p, self.config.max_lateral_acceleration_mps2, self.idm.deceleration_comfort_mps2))
        y, lane_centre = self._continuous_y(p)
        self._since_lane_change_s += dt_s
        self._update_lane_hold(p, dt_s)
        self._update_flow_seen(p, v0, dt_s)
        self._route_settled_s = self._route_settled_s + dt_s if self._route_lane_change_curvature_ok(p) else 0.0
        if self._merge_relax_s is not None:
            self._merge_relax_s += dt_s
            if self._merge_relax_s >= self.config.route_merge_relax_s:
                self._merge_relax_s = None
        if p.command != "keep_left":
            self._route_ramp_lanes.clear()
        if p.command != "keep_left":
            self._route_kept_left = False
        elif p.lane_valid and p.lanes_right >= 1 and abs(p.lateral_offset_m) < 0.3 * w:
            self._route_kept_left = True

        # ---- behaviour: lateral decision
        if self._lc_active:
            self._lc_elapsed_s += dt_s
            delta_now = int(round((self._lc_target_y_m - lane_centre) / w))
            # abort while still mostly in the start lane if the target lane turned unsafe
            # a lane change the route requires is abandoned only when the new follower could not stop
            imposed = self.config.max_braking_mps2 if self._lc_for_route else None
            if (delta_now != 0 and abs(y - self._lc_start_lane_centre_m) < 0.45 * w
                    and not self.lane_change_safe(p, delta_now, imposed)):
                self.aborted_lane_changes += 1
                retry = delta_now if self._lc_for_route else 0
                self._start_lane_change(y, lane_centre, 0, w, 0.6 * self.config.lane_change_duration_s)
                self._lc_retry_side = retry
            elif self._lc_elapsed_s >= self._lc_duration_s and abs(y - self._lc_target_y_m) < 0.3:
                self._lc_active = False
                self._since_lane_change_s = 0.0
                self._lc_retry_side = 0
            elif self._lc_retry_side and self._route_lane_change(p) == self._lc_retry_side:
                # the route's lane change was given up for a car in the target lane, which has passed: go
                # again from here rather than first finishing the way back (a lane's end or an exit is near)
                self._start_route_lane_change(p, y, lane_centre, self._lc_retry_side, w, v_ego)
        elif route_delta := self._route_lane_change(p):
            self._start_route_lane_change(p, y, lane_centre, route_delta, w, v_ego)
        elif (p.lane_valid and p.vehicles_valid and p.lane_id is not None and p.lanes_count is not None
              and self._since_lane_change_s >= self.config.min_time_between_lane_changes_s and v_ego > 5.0
              and abs(p.lateral_offset_m) < 0.5
              and max(abs(p.curvature_1pm), abs(p.curvature_ahead_1pm)) <= self.config.max_lane_change_curvature_1pm
              and self._lane_hold_s <= 0.0):
            lead_here, _ = self._lead_and_follower(p, 0)
            a_here = self._idm(p, v0, lead_here)
            best_delta, best_gain = 0, self.config.lane_change_gain_mps2
            for delta in (-1, 1):
                if (delta < 0 and p.lanes_left < 1) or (delta > 0 and p.lanes_right < 1):
                    continue
                if delta == -self.route_side(p):  # never away from the side the route wants
                    continue
                if not self._flows_faster(p, delta, v0):
                    continue
                gain = self._mobil_gain(p, delta, v0, a_here)
                if gain > best_gain and self.lane_change_safe(p, delta):
                    best_delta, best_gain = delta, gain
            if best_delta:
                self.lane_changes += 1
                self._start_lane_change(y, lane_centre, best_delta, w, self.config.lane_change_duration_s)

        # ---- behaviour: longitudinal (IDM on the lead of every lane the ego occupies)
        target_y = self._lc_target_y_m if self._lc_active else lane_centre
        target_delta = int(round((target_y - lane_centre) / w)) if w > 0 else 0
        deltas = {0, target_delta}
        if abs(p.lateral_offset_m) > 0.25 * w:  # straddling a line: watch that lane too
            deltas.add(1 if p.lateral_offset_m > 0 else -1)
        lanes_to_cross = self.route_lanes_to_cross(p) if not self._lc_active else 0
        cap = self._route_speed_cap(p, lanes_to_cross)
        if cap is not None:
            v0 = min(v0, cap)
        branch_cap = self._route_branch_speed_cap(p)
        if branch_cap is not None:
            v0 = min(v0, branch_cap)
        gap_speed = self._route_gap_speed(p, lanes_to_cross)
        if gap_speed is not None:
            v0 = min(gap_speed, self.config.cruise_speed_mps)  # may exceed a ramp's limit to match traffic
        exit_cap = self._route_exit_speed_cap(p, dt_s)
        if exit_cap is not None:
            v0 = min(v0, exit_cap)
        acceleration = self._idm(p, v0, None)
        if gap_speed is not None:  # track the gap's speed firmly (IDM's free term fades near v0)
            acceleration = float(np.clip(v0 - v_ego, -self.idm.deceleration_comfort_mps2,
                                         self.idm.acceleration_max_mps2))
        lead_gap = lead_rel = None
        emergency = False
        stop_line = self._route_stop_line(p, lanes_to_cross)
        if stop_line is not None:
            acceleration = min(acceleration, self._route_stop_acceleration(p, v0, stop_line))
        junction_line = self._route_junction_stop_line(p)
        if junction_line is not None:
            acceleration = min(acceleration, self._idm(p, v0, junction_line))
        for obstacle in self._route_junction_obstacles(p, v0, dt_s):
            acceleration = min(acceleration, self._idm(p, v0, obstacle))
        for delta in sorted(deltas):
            lead, _ = self._lead_and_follower(p, delta)
            if lead is None or self._route_leaving_lane_ignores(p, delta, target_delta, lead):
                continue
            merge_idm = self._merge_idm() if delta == target_delta else None
            if merge_idm is not None:
                acceleration = min(acceleration, merge_idm.acceleration(p.ego_speed_mps, v0, lead.gap_m,
                                                                        lead.relative_speed_mps))
            else:
                acceleration = min(acceleration, self._idm(p, v0, lead))
            if lead_gap is None or lead.gap_m < lead_gap:
                lead_gap, lead_rel = lead.gap_m, lead.relative_speed_mps
            closing = -lead.relative_speed_mps
            stop_braking = self._lead_stop_braking(p, lead, dt_s)
            if (stop_braking is not None and stop_braking > self.config.comfort_braking_mps2
                    and lead.gap_m > v_ego * self.config.lead_stop_emergency_headway_s):
                acceleration = min(acceleration, -self.config.comfort_braking_mps2)  # (far: comfort first)
            elif stop_braking is not None and stop_braking > self.config.comfort_braking_mps2:
                emergency = True
            elif stop_braking is not None:
                acceleration = min(acceleration, -stop_braking)
            if lead.gap_m < 0.5 * self.idm.min_gap_m:
                emergency = True
            elif lead.lane_delta is not None and closing > 0 and lead.gap_m / closing < self.config.emergency_ttc_s:
                emergency = True  # (junction traffic is yielded to by IDM on the conflict point)
        if not p.vehicles_valid:
            acceleration = min(acceleration, 0.0)
        # comfortable braking unless a collision is close; then the strongest braking there is
        floor = -self.config.max_braking_mps2 if emergency else -self.config.comfort_braking_mps2
        acceleration = -self.config.max_braking_mps2 if emergency else acceleration
        acceleration = float(np.clip(acceleration, floor, self.idm.acceleration_max_mps2))

        # ---- path: lateral offsets from the current lane centre at distances ahead
        v_path = max(v_ego, 1.0)
        times = np.linspace(0.0, self.config.path_horizon_s, 16)
        if self._lc_active:
            taus = (self._lc_elapsed_s + times) / self._lc_duration_s
            blend = np.array([quintic_blend(t) for t in taus])
            ys = self._lc_start_y_m + (self._lc_target_y_m - self._lc_start_y_m) * blend
            lateral = ys - lane_centre
            rate = ((self._lc_target_y_m - self._lc_start_y_m) / self._lc_duration_s
                    * quintic_blend_rate(self._lc_elapsed_s / self._lc_duration_s))
        else:
            lateral = np.zeros_like(times)
            rate = 0.0
        lateral = lateral + self._route_branch_offsets(p, times * v_path)
        return Plan(
            target_lane_delta=target_delta,
            target_speed_mps=float(v0),
            target_acceleration_mps2=acceleration,
            path_s_m=tuple(float(s) for s in times * v_path),
            path_lateral_m=tuple(float(d) for d in lateral),
            path_lateral_rate_mps=float(rate),
            lane_change_active=self._lc_active,
            lead_gap_m=lead_gap,
            lead_relative_speed_mps=lead_rel,
            emergency=emergency,
        )

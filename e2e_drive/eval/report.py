"""``e2e-drive report DIR``: one self-contained HTML file and a Markdown summary of a run.

The HTML opens offline with no server: CSS is inline, plots are inline SVG (matplotlib),
videos are base64 VP8 WebM data URIs, and nothing refers to any network address. It holds

- the main table (agents x conditions: success rate and km between collisions, with
  intervals), the summary tables and, with two agents or more, the paired comparison;
- plots: distributions of min TTC, mean speed and max |lateral offset|; success and
  collision rates per condition with Wilson intervals; for scenarios of the ability suite, the
  ability scores (one grouped bar chart per condition: abilities x agents, Wilson intervals);
  ego trajectories;
- short videos of each agent's worst episodes, the agent's camera beside a bird's-eye view.
  They are re-simulated from the episode's seed with the same agent (the run is
  deterministic), and each replay's episode line is checked against the stored one;
- error episodes with their reasons and tracebacks, and the run's configuration.

``DIR/summary.md`` has the same tables in Markdown, for a paper or a README.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from e2e_drive.errors import ConfigError

__all__ = ["write_report", "build_markdown", "replay_clip", "worst_episodes", "SEVERITY"]

#: Ranking of outcomes for "worst episodes" (lower = worse).
SEVERITY: dict[str, int] = {"collision": 0, "offroad": 1, "route_deviation": 2, "stalled": 2, "time_up": 2,
                            "timeout": 3, "agent_error": 4, "resource_error": 4, "sim_error": 5, "worker_died": 5, "success": 6}
#: Longest clip [s] and the frame size of the bird's-eye view beside the camera [px].
CLIP_S = 6.0
BEV_PX = 176
CAMERA_VIDEO_HEIGHT_PX = 176
#: Largest video clip kept in the report [bytes] (larger ones are re-encoded smaller).
MAX_CLIP_BYTES = 350_000
#: Episodes re-simulated per agent and scenario for the trajectory plot when none were saved.
TRAJECTORIES_PER_AGENT = 2

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;
color:#1d2330;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:36px;border-bottom:2px solid #d8dde6;padding-bottom:4px}
h3{margin-bottom:6px}.meta{color:#555;font-size:.92em}
table{border-collapse:collapse;margin:8px 0 18px;font-size:.86em}
th,td{border:1px solid #d0d5dd;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#eef1f6}tr:nth-child(even) td{background:#f8f9fb}
.cap{font-size:.9em;color:#333;margin:4px 0 2px;font-weight:600}
.note{font-size:.88em;color:#555}.warn{color:#a33}
.clips{display:flex;flex-wrap:wrap;gap:18px}.clip{border:1px solid #d0d5dd;padding:8px;border-radius:6px}
.clip video{display:block;max-width:100%}
.plot svg{max-width:100%;height:auto}.scroll{overflow-x:auto}
pre{background:#f4f6f9;padding:8px;overflow:auto;font-size:.8em;max-height:420px}
details{margin:4px 0}code{background:#f0f2f5;padding:0 3px}
"""


# ============================================================================ small helpers
def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> str:
    out = []
    if caption:
        out.append(f'<div class="cap">{_esc(caption)}</div>')
    out.append('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{_esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _md_table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


_SVG_CLEAN = [
    (re.compile(r"<\?xml.*?\?>\s*", re.S), ""),
    (re.compile(r"<!DOCTYPE.*?>\s*", re.S), ""),
    (re.compile(r"<metadata>.*?</metadata>\s*", re.S), ""),
    (re.compile(r'\s+xmlns(:\w+)?="[^"]*"'), ""),
]


def _svg(fig: Any) -> str:
    """A matplotlib figure as inline SVG with no external references (namespaces are implicit in HTML)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    for pattern, repl in _SVG_CLEAN:
        text = pattern.sub(repl, text)
    return f'<div class="plot">{text}</div>'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _capped(value: Any, cap: float) -> float | None:
    if value is None:
        return cap
    v = float(value)
    return min(v, cap) if math.isfinite(v) else cap


# ============================================================================ tables
def _in_run_order(names: Sequence[str], order: Sequence[str] | None) -> list[str]:
    """Distinct names, in the run's order where known (conditions as given: train first)."""
    names = list(dict.fromkeys(names))
    if not order:
        return names
    rank = {n: i for i, n in enumerate(order)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _main_table(summary: Mapping[str, Any], order: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Agents (x scenario) by conditions: success rate and km between collisions (CARLA's two tables in one)."""
    groups = summary["groups"]
    conditions = _in_run_order([g["condition"] for g in groups], order)
    keys = list(dict.fromkeys((g["agent"], g["scenario"]) for g in groups))
    by = {(g["agent"], g["scenario"], g["condition"]): g for g in groups}
    head = ["agent", "scenario"] + [f"{c}: success" for c in conditions] + [f"{c}: km/collision" for c in conditions]
    rows = []
    for agent, scenario in keys:
        succ, km = [], []
        for c in conditions:
            g = by.get((agent, scenario, c))
            if g is None:
                succ.append("-")
                km.append("-")
                continue
            r = g["rates"]["success"]
            succ.append(f"{100 * r['rate']:.0f}% [{100 * r['low']:.0f},{100 * r['high']:.0f}] n={r['n']}")
            k = g["km_between"]["collision"]
            if k.get("km_between") is None:
                km.append("-" if k.get("low") is None else f">{k['low']:.2f} (0 collisions)")
            else:
                high = "inf" if k.get("high") is None else f"{k['high']:.2f}"
                km.append(f"{k['km_between']:.2f} [{k['low']:.2f},{high}]")
        rows.append([agent, scenario] + succ + km)
    return head, rows


def _summary_tables(summary: Mapping[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    from e2e_drive.eval import summary as summary_mod

    return summary_mod._summary_tables(summary)


def _comparison(rows: Sequence[Mapping[str, Any]], baseline: str | None) -> dict[str, Any] | None:
    from e2e_drive.eval.summary import compare

    agents = sorted({r["agent"] for r in rows})
    if baseline is None or baseline not in agents or len(agents) < 2:
        return None
    return compare(rows, baseline)


def _default_baseline(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str | None:
    agents = [a["label"] for a in meta["config"]["agents"]]
    refs = [a["label"] for a in meta["config"]["agents"] if a.get("is_reference")]
    present = {r["agent"] for r in rows}
    for name in refs + agents:
        if name in present:
            return name
    return None


# ============================================================================ ranking
def _focus_agents(run_dir: Path, rows: Sequence[Mapping[str, Any]], focus: Sequence[str] | None) -> list[str]:
    """The user's agents to compare with every baseline: ``focus``, else those a benchmark run names
    (DIR/benchmark.json, "submitted"); only agents of the run."""
    if focus is None:
        try:
            focus = json.loads((run_dir / "benchmark.json").read_text()).get("submitted") or []
        except (OSError, ValueError, AttributeError):
            focus = []
    present = {r["agent"] for r in rows}
    return [a for a in focus or () if a in present]


def _pooled_comparisons(rows: Sequence[Mapping[str, Any]], agent: str) -> list[dict[str, Any]]:
    """``agent`` against every other agent, paired, pooled over scenarios and conditions (and per ability)."""
    from e2e_drive.eval.summary import compare

    out = []
    for base in sorted({r["agent"] for r in rows} - {agent}):
        comp = compare([r for r in rows if r["agent"] in (agent, base)], base, metrics=("success", "driving_score"))
        cells = comp["comparisons"]
        pooled = [c for c in cells if c["scenario"] == "*"] or cells
        out.append({**comp, "comparisons": pooled})
    return out


def _ranking_parts(rows: Sequence[Mapping[str, Any]], focus: Sequence[str]) -> dict[str, Any]:
    """(title, head, rows) of the ranking tables, and the paired comparisons of the focus agents."""
    from e2e_drive.eval.ranking import ranking_tables

    t = ranking_tables(rows, marked=focus)
    tables = [("Ranking by the driving score: rank ranges, shared where the paired intervals cannot separate the "
               "agents (Holm-corrected); within a range, by name" + ("; * = your agent" if focus else ""),
               t["overall"]["head"], t["overall"]["rows"])]
    if t["abilities"]["rows"]:
        tables.append(("Ability scores with rank ranges: success % [Wilson 95%] #rank", t["abilities"]["head"],
                       t["abilities"]["rows"]))
    return {"tables": tables, "comparisons": {a: _pooled_comparisons(rows, a) for a in focus}}


def _ranking_html(parts: Mapping[str, Any]) -> list[str]:
    from e2e_drive.eval import summary as summary_mod

    body = ['<h2 id="ranking">Ranking</h2>'] + [_table(h, r, title) for title, h, r in parts["tables"]]
    for agent, comps in parts["comparisons"].items():
        body.append(f"<h3>{_esc(agent)} against each baseline (paired, pooled)</h3>")
        for comp in comps:
            h, r = summary_mod._comparison_rows(comp)
            body.append(_table(h, r, f"{agent} minus {comp['baseline']}"))
            if comp.get("abilities"):
                h, r = summary_mod._ability_comparison_rows(comp)
                body.append(_table(h, r, f"{agent} minus {comp['baseline']}, per ability"))
    return body


def _ranking_markdown(parts: Mapping[str, Any]) -> list[str]:
    from e2e_drive.eval.summary import comparison_to_markdown

    out = ["## Ranking", ""]
    for title, h, r in parts["tables"]:
        out += [f"**{title}**", "", _md_table(h, r), ""]
    for agent, comps in parts["comparisons"].items():
        out += [f"### {agent} against each baseline (paired, pooled)", ""]
        out += [comparison_to_markdown(c) for c in comps]
    return out


# ============================================================================ plots
def _plot_distributions(rows: Sequence[Mapping[str, Any]], order: Sequence[str] | None = None) -> str:
    plt = _pyplot()
    from e2e_drive.eval.metric_defs import caps
    from e2e_drive.eval.metrics import ERROR_STATUSES

    declared = caps()  # None (infinite) counts as the declared cap, as in the summary
    metrics = [("min_ttc_s", f"min TTC [s] (no closing lead = {declared['min_ttc_s']:g})", declared.get("min_ttc_s")),
               ("mean_speed_mps", "mean speed [m/s]", declared.get("mean_speed_mps")),
               ("max_abs_lateral_offset_m", "max |lateral offset| [m]", declared.get("max_abs_lateral_offset_m"))]
    multi_cond = len({r["condition"] for r in rows}) > 1
    conditions = _in_run_order([r["condition"] for r in rows], order)
    groups = [(a, c) for a in dict.fromkeys(r["agent"] for r in rows) for c in conditions
              if any(r["agent"] == a and r["condition"] == c for r in rows)]
    labels = [f"{a}\n{c}" if multi_cond else a for a, c in groups]
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 1.1 * len(groups) * 3), 3.4))
    rng = np.random.default_rng(0)
    for ax, (key, title, cap) in zip(axes, metrics):
        data = []
        for a, c in groups:
            vals = [r.get(key) for r in rows if r["agent"] == a and r["condition"] == c
                    and r["status"] not in ERROR_STATUSES]
            vals = [_capped(v, cap) if cap is not None else v for v in vals]
            data.append([float(v) for v in vals if v is not None])
        ax.boxplot([d if d else [np.nan] for d in data], showfliers=False, widths=0.55)
        for i, d in enumerate(data):
            if d:
                ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(d)), d, s=9, alpha=0.6, color="#2b6cb0", zorder=3)
        ax.set_xticks(range(1, len(groups) + 1))
        ax.set_xticklabels(labels, rotation=30 if len(groups) > 3 else 0, ha="right" if len(groups) > 3 else "center")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _svg(fig)


def _plot_rates(summary: Mapping[str, Any], order: Sequence[str] | None = None) -> str:
    plt = _pyplot()
    groups = summary["groups"]
    scenarios = list(dict.fromkeys(g["scenario"] for g in groups))
    conditions = _in_run_order([g["condition"] for g in groups], order)
    agents = list(dict.fromkeys(g["agent"] for g in groups))
    by = {(g["agent"], g["scenario"], g["condition"]): g for g in groups}
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(max(8.0, 1.0 + 1.3 * len(conditions) * 2), 2.9 * len(scenarios)),
                             squeeze=False)
    width = 0.8 / max(1, len(agents))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, scenario in enumerate(scenarios):
        for col, rate in enumerate(("success", "collision")):
            ax = axes[row][col]

            def rate_of(agent: str, c: str, rate: str = rate, scenario: str = scenario) -> Mapping[str, Any] | None:
                g = by.get((agent, scenario, c))
                if g is None or g["rates"][rate]["rate"] is None:  # none driven: no collision rate
                    return None
                return g["rates"][rate]

            _grouped_bars(ax, agents, conditions, rate_of, width, colours)
            ax.set_xticks(range(len(conditions)))
            ax.set_xticklabels(conditions)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{scenario}: {rate} rate (Wilson 95%)")
            ax.grid(axis="y", alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _svg(fig)


def _grouped_bars(ax: Any, agents: Sequence[str], groups: Sequence[str],
                  entry: Callable[[str, str], Mapping[str, Any] | None], width: float, colours: Sequence[str]) -> None:
    """One bar per agent in each group (x = the group's index), with its interval as error bars;
    ``entry(agent, group)`` gives ``rate``, ``low`` and ``high``, or None for no bar."""
    for i, agent in enumerate(agents):
        xs, ys, lo, hi = [], [], [], []
        for j, group in enumerate(groups):
            r = entry(agent, group)
            if r is None:
                continue
            xs.append(j + (i - (len(agents) - 1) / 2) * width)
            ys.append(r["rate"])
            lo.append(r["rate"] - r["low"])
            hi.append(r["high"] - r["rate"])
        ax.bar(xs, ys, width * 0.9, yerr=[lo, hi], capsize=3, label=agent, color=colours[i % len(colours)],
               alpha=0.85, error_kw={"elinewidth": 1})


def _plot_abilities(summary: Mapping[str, Any], order: Sequence[str] | None = None) -> str:
    """Ability scores: one grouped bar chart per condition (and pooled), abilities on x, one bar per agent,
    each with its Wilson interval."""
    plt = _pyplot()
    entries = summary.get("abilities") or []
    conditions = _in_run_order([a["condition"] for a in entries if a["condition"] != "*"], order)
    if any(a["condition"] == "*" for a in entries):
        conditions.append("*")
    from e2e_drive.eval.summary import _ability_order

    abilities = _ability_order({a["ability"] for a in entries})
    agents = list(dict.fromkeys(a["agent"] for a in entries))
    by = {(a["agent"], a["condition"], a["ability"]): a for a in entries}
    fig, axes = plt.subplots(len(conditions), 1, figsize=(max(7.0, 1.0 + 1.4 * len(abilities)), 3.0 * len(conditions)),
                             squeeze=False)
    width = 0.8 / max(1, len(agents))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, condition in enumerate(conditions):
        ax = axes[row][0]
        _grouped_bars(ax, agents, abilities, lambda agent, ability, condition=condition:
                      by.get((agent, condition, ability)), width, colours)
        ax.set_xticks(range(len(abilities)))
        ax.set_xticklabels([a.replace("_", " ") for a in abilities])
        ax.set_ylim(0, 1.05)
        where = "pooled over conditions" if condition == "*" else condition
        ax.set_title(f"ability scores, {where} (success, Wilson 95%)")
        ax.grid(axis="y", alpha=0.3)
        if row == 0:
            ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return _svg(fig)


def _plot_trajectories(tracks: Mapping[str, list[tuple[str, int, np.ndarray, np.ndarray]]]) -> str:
    """tracks: scenario -> [(agent, seed, x_m, y_m)]."""
    plt = _pyplot()
    scenarios = list(tracks)
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(10, 2.8 * len(scenarios)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, scenario in zip(axes[:, 0], scenarios):
        agents = list(dict.fromkeys(t[0] for t in tracks[scenario]))
        spans = []
        for agent, seed, x, y in tracks[scenario]:
            colour = colours[agents.index(agent) % len(colours)]
            ax.plot(x, y, color=colour, lw=1.2, alpha=0.8,
                    label=agent if seed == min(s for a, s, _, _ in tracks[scenario] if a == agent) else None)
            ax.plot(x[-1:], y[-1:], "o", color=colour, ms=3)
            spans.append((np.ptp(x), np.ptp(y)))
        ax.invert_yaxis()  # world y points to the right of travel: draw it downwards, as seen from above
        wide = max((s[0] for s in spans), default=1) > 4 * max((s[1] for s in spans), default=1)
        if not wide:
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_title(f"{scenario}: ego paths (world frame, seen from above; dot = end)")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        ax.legend(fontsize=8, frameon=False)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _svg(fig)


# ============================================================================ replays and videos
def worst_episodes(rows: Sequence[Mapping[str, Any]], per_agent: int) -> list[Mapping[str, Any]]:
    """Each agent's worst episodes: worst outcome first, then lowest driving score, then lowest min TTC."""
    out = []
    for agent in dict.fromkeys(r["agent"] for r in rows):
        mine = [r for r in rows if r["agent"] == agent]
        mine.sort(key=lambda r: (SEVERITY.get(r["status"], 9), not r.get("at_fault"),
                                 r.get("driving_score") if r.get("driving_score") is not None else 0.0,
                                 _capped(r.get("min_ttc_s"), 1e9), r["scenario"], r["condition"], r["seed"]))
        out.extend(mine[:per_agent])
    return out


def _lead_ttc(info: Mapping[str, Any]) -> float:
    best = math.inf
    for n in info.get("neighbours", ()):
        if n.get("lane_delta") == 0 and n.get("gap_m", -1) > 0 and n.get("relative_speed_mps", 0) < 0:
            best = min(best, n["gap_m"] / -n["relative_speed_mps"])
    return best


def _label(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write text lines at the top left on a dark band (readable on sky, road or grass)."""
    import cv2

    y = 14
    for text in lines:
        if text:
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42, 1)
            band = frame[y - h - 4: y + 4, 2: 10 + w]
            band[:] = (band * 0.35).astype(np.uint8)
            cv2.putText(frame, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        y += 16
    return frame


def replay_clip(job: Any, stored_line: Mapping[str, Any] | None = None, clip_s: float = CLIP_S,
                want_video: bool = True) -> dict[str, Any]:
    """Re-simulate an episode (same agent, same seed) and make a short clip of it.

    The clip shows the agent's first camera (newest frame, what the agent saw) beside an
    ego-aligned bird's-eye view, over the last ``clip_s`` seconds before the episode's
    decisive moment (its end for failures, the lowest TTC for successes). Returns the
    replay's episode line, whether it matches ``stored_line`` (timings aside), the ego path,
    and with ``want_video`` the WebM bytes and a JPEG poster frame.
    """
    import cv2

    from e2e_drive.eval.runner import run_episode, strip_timings
    from e2e_drive.sensors import Camera, CameraSpec

    bev = Camera(CameraSpec(kind="bev", width_px=BEV_PX, height_px=BEV_PX, bev_ahead_m=45.0, bev_behind_m=15.0))
    frames: list[np.ndarray] = []
    ttcs: list[float] = []
    path: list[tuple[float, float]] = []
    camera_name: list[str] = []

    def observer(env: Any, obs: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        base = env.unwrapped
        ego = base.sim.vehicle
        path.append((float(ego.position[0]), float(ego.position[1])))
        if not want_video:
            return
        if not camera_name:
            camera_name.append(next(iter(base.cameras)))
        name = camera_name[0]
        spec = base.camera_specs[name]
        ch = 1 if spec.grayscale else 3
        cam = np.ascontiguousarray(obs[name][:, :, -ch:])
        if ch == 1:
            cam = np.repeat(cam, 3, axis=2)
        scale = CAMERA_VIDEO_HEIGHT_PX / cam.shape[0]
        cam = cv2.resize(cam, (max(1, int(round(cam.shape[1] * scale))), CAMERA_VIDEO_HEIGHT_PX),
                         interpolation=cv2.INTER_NEAREST)
        top = np.ascontiguousarray(bev.render(base.sim.road, ego))
        if top.shape[2] == 1:
            top = np.repeat(top, 3, axis=2)
        top = cv2.resize(top, (CAMERA_VIDEO_HEIGHT_PX, CAMERA_VIDEO_HEIGHT_PX), interpolation=cv2.INTER_NEAREST)
        frame = np.concatenate([cam, np.full((CAMERA_VIDEO_HEIGHT_PX, 4, 3), 255, np.uint8), top], axis=1)
        frames.append(_label(np.ascontiguousarray(frame),
                             [f"t={info.get('time_s', 0.0):5.1f}s  v={ego.speed:4.1f} m/s",
                              f"{name} | bird's-eye"]))
        ttcs.append(_lead_ttc(info))

    line = run_episode(job, observer=observer)
    line.pop("_trajectory_npz", None)
    same = None
    if stored_line is not None:
        same = strip_timings({k: v for k, v in line.items() if k != "trajectory_file"}) == \
            strip_timings({k: v for k, v in stored_line.items() if k != "trajectory_file"})
    out: dict[str, Any] = {"line": line, "matches": same, "path": np.array(path)}
    if not want_video or not frames:
        return out
    fps = int(job.config["policy_frequency_hz"])
    n = max(1, int(round(clip_s * fps)))
    if line["status"] == "success" and np.isfinite(ttcs).any():
        centre = int(np.argmin(ttcs))
        end = min(len(frames), max(n, centre + n // 2))
    else:
        end = len(frames)
    start = max(0, end - n)
    clip = frames[start:end]
    last = clip[-1].copy()
    _label(last, ["", "", f"end: {line['status']}"])
    clip = clip[:-1] + [last] * max(1, fps)  # hold the last frame for a second
    out["webm"] = _encode_webm(clip, fps)
    out["width_px"] = int(clip[0].shape[1])
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(clip[len(clip) // 2], cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, 80])
    out["poster_jpg"] = jpg.tobytes() if ok else b""
    out["clip_s"] = len(clip) / fps
    return out


def _encode_webm(frames: Sequence[np.ndarray], fps: int, max_bytes: int = MAX_CLIP_BYTES) -> bytes:
    """VP8 WebM of RGB frames; smaller frames until it fits ``max_bytes`` (pixel noise compresses badly)."""
    import cv2

    data = b""
    for scale in (1.0, 0.75, 0.5, 0.35):
        h, w = (int(round(s * scale)) // 2 * 2 for s in frames[0].shape[:2])
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / "clip.webm"
            with _quiet_stderr():  # FFmpeg's harmless note that it picks its own tag for VP8
                writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"VP80"), fps, (w, h))
            if not writer.isOpened():
                raise RuntimeError("OpenCV cannot write VP8 video")
            for f in frames:
                small = f if scale == 1.0 else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
                writer.write(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
            writer.release()
            data = video.read_bytes()
        if len(data) <= max_bytes:
            break
    return data


class _quiet_stderr:
    """Silence file descriptor 2 (native libraries print there directly) for a short block."""

    def __enter__(self) -> None:
        import os
        import sys

        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: Any) -> None:
        import os

        os.dup2(self._saved, 2)
        os.close(self._saved)


def _video_html(row: Mapping[str, Any], replay: Mapping[str, Any]) -> str:
    caption = (f"{row['agent']} | {row['scenario']} / {row['condition']} | seed {row['seed']} | "
               f"{row['status']}" + (" (at fault)" if row.get("at_fault") else "") +
               f" | DS {row.get('driving_score') or 0:.2f} | min TTC "
               + ("-" if row.get("min_ttc_s") is None else f"{row['min_ttc_s']:.1f} s"))
    if replay.get("matches") is False:
        check = '<div class="note warn">the replay did not reproduce the stored episode exactly</div>'
    elif replay.get("matches"):
        check = '<div class="note">replay reproduces the stored episode line exactly</div>'
    else:
        check = ""
    if "webm" not in replay:
        return f'<div class="clip"><div class="cap">{_esc(caption)}</div><div class="note">no frames</div></div>'
    video = base64.b64encode(replay["webm"]).decode()
    poster = base64.b64encode(replay.get("poster_jpg", b"")).decode()
    return (f'<div class="clip"><div class="cap">{_esc(caption)}</div>'
            f'<video controls loop muted autoplay playsinline width="{replay.get("width_px", 640)}" '
            f'poster="data:image/jpeg;base64,{poster}" '
            f'src="data:video/webm;base64,{video}"></video>{check}</div>')


# ============================================================================ report
def _error_html(rows: Sequence[Mapping[str, Any]]) -> str:
    from e2e_drive.eval.metrics import ERROR_STATUSES

    errors = [r for r in rows if r["status"] in ERROR_STATUSES]
    if not errors:
        return '<p class="note">No agent, simulator, worker-process or memory errors, and no timeouts.</p>'
    out = []
    for r in errors[:50]:
        out.append(f"<details><summary>{_esc(r['status'])}: {_esc(r['agent'])} on {_esc(r['scenario'])}/"
                   f"{_esc(r['condition'])} seed {_esc(r['seed'])}: {_esc(r.get('status_reason'))}</summary>"
                   f"<pre>{_esc(r.get('error') or '')}</pre></details>")
    if len(errors) > 50:
        out.append(f'<p class="note">... and {len(errors) - 50} more (see episodes.jsonl)</p>')
    return "\n".join(out)


def _header(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], run_dir: Path) -> tuple[str, list[str]]:
    cfg = meta["config"]
    facts = [
        ("run", str(run_dir)),
        ("agents", ", ".join(a["label"] + (" (reference)" if a.get("is_reference") else "") for a in cfg["agents"])),
        ("scenarios", ", ".join(f"{e['name']} ({e['env_id']})" for e in cfg["envs"])),
        ("conditions", ", ".join(c["name"] for c in cfg["conditions"])),
        ("seeds", f"{cfg['seed']}..{cfg['seed'] + cfg['episodes'] - 1} (paired: every agent meets the same seeds)"),
        ("episodes", f"{len(rows)} of {len(cfg['agents']) * len(cfg['envs']) * len(cfg['conditions']) * cfg['episodes']}"),
        ("e2e_drive", f"{cfg.get('package_version')} (commit {str(meta.get('git_commit') or '?')[:10]})"),
        ("created", str(meta.get("created"))),
    ]
    return "<br>".join(f"<b>{_esc(k)}</b>: {_esc(v)}" for k, v in facts), [f"- **{k}**: {v}" for k, v in facts]


def build_markdown(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                   comparison: Mapping[str, Any] | None, run_dir: Path,
                   ranking: Mapping[str, Any] | None = None) -> str:
    """The Markdown summary (tables only, no images): for pasting into a paper or a README."""
    from e2e_drive.eval.summary import comparison_to_markdown, to_markdown

    _, facts = _header(meta, rows, run_dir)
    head, table = _main_table(summary, [c["name"] for c in meta["config"]["conditions"]])
    parts = ["# e2e-drive evaluation", "", *facts, "",
             "## Agents x conditions: success rate [Wilson 95%] and km between collisions [exact Poisson 95%]", "",
             _md_table(head, table), "", *(_ranking_markdown(ranking) if ranking else []),
             "## Summary tables", "", to_markdown(summary)]
    if comparison is not None:
        parts += ["## Paired comparison", "", comparison_to_markdown(comparison),
                  "An interval containing zero reads \"no detectable difference\", never a win.", ""]
    parts += _attribution_markdown(run_dir)
    return "\n".join(parts)


def _attribution_markdown(run_dir: Path) -> list[str]:
    """The failure attribution and shield-fork tables, when RUN_DIR/attribution.jsonl exists."""
    from e2e_drive.eval.attribution import attribution_tables, load_attribution, summarize_attribution

    lines = load_attribution(run_dir)
    if not lines:
        return []
    parts = ["## Why it failed: failure attribution", ""]
    for caption, head, rows in attribution_tables(summarize_attribution(lines)):
        parts += [f"{caption}:", "", _md_table(head, rows), ""]
    return parts


def _attribution_html(run_dir: Path, rows: Sequence[Mapping[str, Any]], videos: int, replays: Any) -> list[str]:
    """The attribution section (tables, and each agent's two example clips per cause when ``videos``)."""
    from e2e_drive.eval.attribution import REPORT_NOTE, attribution_tables, load_attribution, summarize_attribution

    lines = load_attribution(run_dir)
    if not lines:
        return []
    summary = summarize_attribution(lines)
    out = ['<h2 id="attribution">Why it failed: failure attribution</h2>', f'<p class="note">{_esc(REPORT_NOTE)}</p>']
    out += [_table(head, table, caption) for caption, head, table in attribution_tables(summary)]
    if videos:
        by_key = {(r["agent"], r["scenario"], r["condition"], r["seed"]): r for r in rows}
        clips = []
        for agent, s in summary.items():
            for label, examples in s["examples"].items():
                for e in examples:
                    row = by_key.get((agent, e["scenario"], e["condition"], e["seed"]))
                    if row is None:
                        continue
                    res = replays.get(row, want_video=True)
                    clip = (_video_html(row, res) if res is not None and "error" not in res else
                            f'<div class="clip"><div class="note warn">cannot re-simulate: '
                            f'{_esc((res or {}).get("error"))}</div></div>')
                    clips.append(clip.replace('<div class="cap">', f'<div class="cap">[{_esc(label)}] ', 1))
        if clips:
            out += ['<div class="clips">', *clips, "</div>"]
    return out


def _tables_html(summary: Mapping[str, Any], comparison: Mapping[str, Any] | None, order: Sequence[str]) -> list[str]:
    """The main table (agents x conditions), the summary tables and the paired comparison."""
    from e2e_drive.eval import summary as summary_mod

    head, table = _main_table(summary, order)
    body = ["<h2>Agents x conditions</h2>",
            _table(head, table, "Success rate [Wilson 95%] and km between collisions [exact Poisson 95%]"),
            "<h2>Summary tables</h2>"]
    body += [_table(h, r, title) for title, h, r in _summary_tables(summary)]
    if comparison is not None:
        h, r = summary_mod._comparison_rows(comparison)
        body.append(f"<h2>Paired comparison against {_esc(comparison['baseline'])}</h2>")
        body.append(_table(h, r, "Agent minus baseline, pairs matched on scenario, condition and seed; an interval "
                                  "that contains 0 reads 'no detectable difference'"))
        if comparison.get("abilities"):
            h, r = summary_mod._ability_comparison_rows(comparison)
            body.append(_table(h, r, "Ability scores: paired success over each ability's scenarios and conditions "
                                     "(agent minus baseline)"))
    return body


def _plots_html(rows: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], order: Sequence[str]) -> list[str]:
    """Distributions of a few metrics per agent and condition, and the rates per condition."""
    out = ["<h2>Distributions</h2>", _plot_distributions(rows, order),
           '<p class="note">One dot per episode (errors left out); boxes show the quartiles.</p>',
           "<h2>Rates per condition</h2>", _plot_rates(summary, order)]
    if summary.get("abilities"):
        out += ['<h2 id="abilities">Ability scores</h2>', _plot_abilities(summary, order),
                '<p class="note">Success over every episode of the scenarios of each ability (errors count as '
                'failures); bars show the Wilson 95% interval.</p>']
    return out


class _Replays:
    """Episodes re-simulated from the run's seeds, each once (a video replay serves the trajectories too)."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = meta
        self.done: dict[tuple, dict[str, Any]] = {}
        self.mismatches = 0

    def __contains__(self, key: tuple) -> bool:
        return key in self.done

    def get(self, row: Mapping[str, Any], want_video: bool) -> dict[str, Any]:
        """The replay of an episode line (with a clip when ``want_video``), or {"error": why}."""
        from e2e_drive.eval.runner import ended_its_process, job_for

        key = (row["agent"], row["scenario"], row["condition"], row["seed"])
        if key in self.done and (not want_video or "webm" in self.done[key]):
            return self.done[key]
        if ended_its_process(row):  # re-simulated here, it would end this process, or fill its memory
            self.done[key] = {"error": "the episode ended its worker process or hit the memory limit; "
                                       "not re-simulated in this process"}
            return self.done[key]
        try:
            job = job_for(self.meta, *key)
            result = replay_clip(job, row, want_video=want_video)
        except (ConfigError, OSError, RuntimeError) as exc:
            self.done[key] = {"error": str(exc)}
            return self.done[key]
        self.mismatches += result.get("matches") is False
        self.done[key] = result
        return result


def _videos_html(rows: Sequence[Mapping[str, Any]], videos: int, replays: _Replays) -> list[str]:
    """Each agent's worst episodes as clips (none when ``videos`` is 0)."""
    if not videos:
        return []
    out = ["<h2>Worst episodes</h2>",
           f'<p class="note">Each agent\'s {videos} worst episodes, re-simulated from their seeds: '
           f'the agent\'s camera (what it saw) beside a bird\'s-eye view; up to {CLIP_S:g} s before '
           f'the end (failures) or around the lowest time-to-collision (successes).</p>'
           f'<div class="clips">']
    for row in worst_episodes(rows, videos):
        res = replays.get(row, want_video=True)
        if res is None or "error" in res:
            out.append(f'<div class="clip"><div class="note warn">{_esc(row["agent"])} seed '
                       f'{row["seed"]}: cannot re-simulate ({_esc((res or {}).get("error"))})</div></div>')
        else:
            out.append(_video_html(row, res))
    out.append("</div>")
    return out


def _trajectory_tracks(rows: Sequence[Mapping[str, Any]], run_dir: Path,
                       replays: _Replays) -> dict[str, list[tuple[str, int, np.ndarray, np.ndarray]]]:
    """scenario -> [(agent, seed, x_m, y_m)]: a few episodes per agent in the scenario's first
    condition, from saved trajectories, else re-simulated (episodes already replayed first)."""
    from e2e_drive.eval.record import EpisodeRecord

    tracks: dict[str, list] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in rows):
        first_condition = next(r["condition"] for r in rows if r["scenario"] == scenario)
        for agent in dict.fromkeys(r["agent"] for r in rows):
            mine = [r for r in rows if r["agent"] == agent and r["scenario"] == scenario
                    and r["condition"] == first_condition]
            mine.sort(key=lambda r: ((r["agent"], r["scenario"], r["condition"], r["seed"]) not in replays, r["seed"]))
            for r in mine[:TRAJECTORIES_PER_AGENT]:
                xy = None
                if r.get("trajectory_file") and (run_dir / r["trajectory_file"]).is_file():
                    rec = EpisodeRecord.load_npz(run_dir / r["trajectory_file"])
                    xy = np.stack([rec.x_m, rec.y_m], axis=1)
                else:
                    res = replays.get(r, want_video=False)
                    if res is not None and "path" in res and len(res["path"]):
                        xy = res["path"]
                if xy is not None and len(xy):
                    tracks.setdefault(scenario, []).append((agent, r["seed"], xy[:, 0], xy[:, 1]))
    return tracks


def _trajectories_html(rows: Sequence[Mapping[str, Any]], tracks: Mapping[str, list]) -> list[str]:
    from e2e_drive.eval.runner import TRAJECTORY_DIR

    if not tracks:
        return []
    saved = any(r.get("trajectory_file") for r in rows)
    source = "saved trajectories" if saved else \
        f"re-simulated; save all with --save-trajectories under {TRAJECTORY_DIR}/"
    return ["<h2>Ego trajectories</h2>", _plot_trajectories(tracks),
            f'<p class="note">{TRAJECTORIES_PER_AGENT} episodes per agent and scenario ({source}).</p>']


def _page(title: str, body: Sequence[str]) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def _check_report_args(run_dir: Path, rows: Sequence[Mapping[str, Any]], videos: Any, baseline: str | None) -> None:
    if not rows:
        raise ConfigError(f"{run_dir}: no finished episodes yet; run e2e-drive evaluate first")
    if isinstance(videos, bool) or not isinstance(videos, int) or videos < 0:
        raise ConfigError(f"--videos {videos!r}: expected an integer >= 0")
    agents = sorted({r["agent"] for r in rows})
    if baseline is not None and baseline not in agents:
        raise ConfigError(f"--baseline {baseline!r}: not an agent of this run; agents: {', '.join(agents)}")


def write_report(run_dir: str | Path, out: str | Path | None = None, videos: int = 2,
                 baseline: str | None = None, trajectories: bool = True,
                 focus: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the HTML report (default DIR/report.html) and DIR/summary.md; return their paths and sizes.

    videos: worst episodes per agent re-simulated as clips (0 = none). baseline: agent for
    the paired comparison (default: the reference agent, else the first agent).
    trajectories: plot ego paths (from saved trajectories, else re-simulating a few episodes).
    focus: the user's agents, compared with every other agent (paired, pooled) in the ranking section
    (default: those DIR/benchmark.json names). With two agents or more, the ranking section ranks them all.
    """
    from e2e_drive.eval.attribution import fill_false_alarms
    from e2e_drive.eval.runner import load_run
    from e2e_drive.eval.summary import summarize

    run_dir = Path(run_dir)
    meta, rows = load_run(run_dir)
    fill_false_alarms(run_dir, rows)  # the counterfactual forks' verdicts, once e2e-drive attribute ran
    _check_report_args(run_dir, rows, videos, baseline)
    t0 = time.perf_counter()
    summary = summarize(rows)
    comparison = _comparison(rows, baseline or _default_baseline(meta, rows))
    header_html, _ = _header(meta, rows, run_dir)
    order = [c["name"] for c in meta["config"]["conditions"]]

    body = [f"<h1>e2e-drive evaluation report</h1><p class=\"meta\">{header_html}</p>"]
    ranking = _ranking_parts(rows, _focus_agents(run_dir, rows, focus)) if len({r["agent"] for r in rows}) > 1 \
        else None
    if ranking:
        body += _ranking_html(ranking)
    body += _tables_html(summary, comparison, order)
    body += _plots_html(rows, summary, order)
    replays = _Replays(meta)
    video_html = _videos_html(rows, videos, replays)  # first, so that the trajectory plot can reuse these replays
    if trajectories:
        body += _trajectories_html(rows, _trajectory_tracks(rows, run_dir, replays))
    body += video_html
    body += _attribution_html(run_dir, rows, videos, replays)
    if replays.mismatches:
        body.append(f'<p class="warn">{replays.mismatches} re-simulated episode(s) did not reproduce their stored '
                    f'lines (code or files changed since the run?).</p>')
    body += ["<h2>Errors</h2>", _error_html(rows),
             "<h2>Run configuration</h2><details><summary>run.json</summary><pre>"
             + _esc(json.dumps(meta, indent=1)) + "</pre></details>",
             f'<p class="note">Made by e2e-drive report in {time.perf_counter() - t0:.0f} s; '
             f'self-contained: no external files or network.</p>']

    page = _page(f"e2e-drive report: {run_dir.name}", body)
    html_path = Path(out) if out is not None else run_dir / "report.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    md_path = run_dir / "summary.md"
    md_path.write_text(build_markdown(meta, rows, summary, comparison, run_dir, ranking), encoding="utf-8")
    return {"html": str(html_path), "markdown": str(md_path), "html_bytes": len(page.encode()),
            "replays": len(replays.done), "mismatches": replays.mismatches}

"""``e2e-drive evaluate | compare | report``: argument parsing only; the work is in the library.

Registered in :data:`e2e_drive.cli.COMMANDS`. Bad input raises ConfigError, which the CLI
prints as one line before exiting with status 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from e2e_drive.errors import ConfigError, check_writable
from e2e_drive.log import HelpWithExamples, get_logger

logger = get_logger(__name__)




def _cmd_evaluate(args: argparse.Namespace) -> int:
    from e2e_drive.eval.runner import evaluate
    from e2e_drive.eval.summary import format_table

    check_writable(args.out, "--out", directory=True)  # before any episode runs
    summary = evaluate(args.env, args.agent, episodes=args.episodes, seed=args.seed, out_dir=args.out,
                       conditions=args.conditions, workers=args.workers, backend=args.backend,
                       save_trajectories=args.save_trajectories, episode_budget_s=args.episode_budget_s,
                       address=args.address, camera_only=not args.allow_ground_truth,
                       progress=not args.no_progress, sanitize_actions=args.sanitize_actions,
                       memory_limit_gb=args.memory_limit_gb, metric_modules=args.metrics_module or (),
                       difficulties=args.difficulty)
    print(format_table(summary))
    out = Path(args.out)
    print(f"episodes: {(out / 'episodes.jsonl').resolve()}")
    print(f"summary:  {(out / 'summary.json').resolve()}")
    logger.info("next:     e2e-drive report %s   |   e2e-drive compare %s --baseline AGENT", out, out)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from e2e_drive.eval.runner import load_run
    from e2e_drive.eval.summary import compare, format_comparison

    _meta, rows = load_run(args.dir)
    if not rows:
        raise ConfigError(f"{args.dir}: no finished episodes yet")
    agents = sorted({r["agent"] for r in rows})
    if args.baseline not in agents:
        raise ConfigError(f"--baseline {args.baseline!r}: not an agent of this run; agents: {', '.join(agents)}")
    if len(agents) < 2:
        raise ConfigError(f"{args.dir}: only one agent ({agents[0]}); nothing to compare")
    path = Path(args.dir) / f"compare_{args.baseline}.json"
    check_writable(path, directory=False)  # before the table is printed
    kwargs: dict[str, Any] = {}
    if args.metrics:
        kwargs["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    try:
        comparison = compare(rows, args.baseline, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"compare: {exc}") from None
    print(format_comparison(comparison))
    path.write_text(json.dumps(comparison, indent=1))
    print(f"written: {path.resolve()}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from e2e_drive.eval.report import write_report

    # Both outputs, before the report's work (re-simulating episodes for videos takes minutes).
    if args.out:
        check_writable(args.out, "--out", directory=False)
    if Path(args.dir).is_dir():
        if not args.out:
            check_writable(Path(args.dir) / "report.html", directory=False)
        check_writable(Path(args.dir) / "summary.md", directory=False)
    if args.attribute:  # resumable; its lines feed the report's attribution section
        from e2e_drive.eval.attribution import attribute_run

        attribute_run(args.dir, progress=True)
    result = write_report(args.dir, out=args.out, videos=args.videos, baseline=args.baseline)
    print(f"report:   {Path(result['html']).resolve()}  ({result['html_bytes'] / 1e6:.1f} MB, self-contained)")
    print(f"markdown: {Path(result['markdown']).resolve()}")
    return 0


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """``e2e-drive evaluate``."""
    p = sub.add_parser(
        "evaluate", help="run agents on scenarios x conditions x paired seeds (parallel, resumable)",
        description="Run every agent on every scenario and condition on the same seeds (paired), append one "
                    "JSON line per episode to OUT/episodes.jsonl, print the summary table (and, for scenarios of "
                    "the ability suite, the ability scores). Re-running the same command resumes; a directory "
                    "made by another configuration is refused.",
        epilog="example: e2e-drive evaluate --env envs/abilities/cut_in.toml --agent agents/expert.toml "
               "--agent agents/blind.toml --difficulty easy,medium,hard --episodes 10 --out runs/cut_in",
        formatter_class=HelpWithExamples)
    p.add_argument("--env", action="append", required=True, metavar="FILE",
                   help="scenario file (envs/*.toml); repeat for several")
    p.add_argument("--agent", action="append", required=True, metavar="SPEC",
                   help="agent file (agents/*.toml) or package.module:Class; repeat for several")
    p.add_argument("--episodes", type=int, default=10, help="episodes (seeds) per agent, scenario and condition "
                                                            "(default 10)")
    p.add_argument("--seed", type=int, default=0, help="first seed; seeds are SEED..SEED+EPISODES-1 (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--conditions", default="train", metavar="NAMES",
                   help="comma-separated condition names or condition .toml files (default train); built-in: "
                        + ", ".join(_condition_names()))
    p.add_argument("--workers", type=int, default=None,
                   help="parallel episodes, each in a worker process (default: all cores; 0 = in this process, "
                        "for debuggers: an agent that crashes ends the run)")
    p.add_argument("--backend", choices=("process", "ray"), default="process",
                   help="process pool (default) or a Ray cluster (pip install e2e-drive[ray])")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (default: start a local one); every node needs e2e-drive and the "
                        "agent files at the same paths")
    p.add_argument("--save-trajectories", action="store_true",
                   help="also write each episode's ego and neighbour trajectories to OUT/trajectories/*.npz")
    p.add_argument("--episode-budget-s", type=float, default=300.0,
                   help="wall-clock budget per episode; an overrun is status 'timeout' (default 300)")
    p.add_argument("--memory-limit-gb", type=float, default=None, metavar="GB",
                   help="memory each worker process may allocate; an episode over it is status 'resource_error' "
                        "(default: 75%% of this machine's memory; 0 = no limit)")
    p.add_argument("--allow-ground-truth", action="store_true",
                   help="allow non-reference agents that read ground truth (privileged ablations); "
                        "by default a run is camera-only")
    p.add_argument("--sanitize-actions", action="store_true",
                   help="turn NaN/inf actions into 0/+-1 and count them (shown in the summary) instead of ending "
                        "the episode as agent_error (the default)")
    p.add_argument("--metrics-module", action="append", default=None, metavar="MODULE",
                   help="module that declares metrics of your own (e2e_drive.eval.metric_defs.register_metric), "
                        "imported by every worker; they are computed into every episode line and shown in the "
                        "summary and the report; repeat for several")
    p.add_argument("--difficulty", default=None, metavar="LEVELS",
                   help="comma-separated difficulty levels (easy,medium,hard) to run every scenario at; each "
                        "scenario must declare difficulty levels. A level other than the file's own (medium unless "
                        "it names one) is scenario NAME@LEVEL in the lines and tables; every line carries "
                        "'difficulty' (default: each file's own level)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)


def add_compare(sub: argparse._SubParsersAction) -> None:
    """``e2e-drive compare``."""
    p = sub.add_parser(
        "compare", help="paired differences against a baseline agent, with intervals and tests",
        description="Paired differences (agent minus baseline, matched on scenario, condition and seed) with "
                    "bootstrap intervals, McNemar / Wilcoxon p-values and P(improvement). An interval that "
                    "contains zero reads 'no detectable difference'. For scenarios of the ability suite, also the "
                    "paired ability scores (success over each ability's scenarios).",
        epilog="example: e2e-drive compare runs/cut_in --baseline expert --metrics success,driving_score",
        formatter_class=HelpWithExamples)
    p.add_argument("dir", help="run directory made by e2e-drive evaluate")
    p.add_argument("--baseline", required=True, help="agent name (as in the summary table)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics (default: the standard set)")
    p.set_defaults(func=_cmd_compare)


def add_report(sub: argparse._SubParsersAction) -> None:
    """``e2e-drive report``."""
    p = sub.add_parser(
        "report", help="one self-contained HTML report (tables, plots, videos) and a Markdown summary",
        description="Write DIR/report.html (opens offline: inline CSS, SVG plots, base64 videos) and "
                    "DIR/summary.md from a run directory (with the ability scores as a bar chart, for scenarios "
                    "of the ability suite).",
        epilog="example: e2e-drive report runs/cut_in --videos 1 --baseline expert",
        formatter_class=HelpWithExamples)
    p.add_argument("dir", help="run directory made by e2e-drive evaluate")
    p.add_argument("--out", default=None, help="HTML file (default DIR/report.html)")
    p.add_argument("--videos", type=int, default=2,
                   help="worst episodes per agent re-simulated as short videos (default 2; 0 = none)")
    p.add_argument("--baseline", default=None,
                   help="agent for the paired-comparison table (default: the reference agent, if any)")
    p.add_argument("--attribute", action="store_true",
                   help="first attribute every failure to perception, decision or control (or unavoidable) and "
                        "replay every safety-filter trigger without its override, by re-simulating from snapshots "
                        "(DIR/attribution.jsonl, resumable; see docs/metrics.md); the report then shows the split")
    p.set_defaults(func=_cmd_report)


def _condition_names() -> list[str]:
    from e2e_drive.eval.conditions import CONDITIONS

    return list(CONDITIONS)

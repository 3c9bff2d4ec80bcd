"""``e2e-drive``: thin command-line entry points; all logic lives in the library.

Every command prints a one-line error (no traceback) for bad input and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Iterable

from e2e_drive import log
from e2e_drive.errors import CheckpointError, ConfigError
from e2e_drive.log import HelpWithExamples

logger = log.get_logger(__name__)


def _cmd_render(args: argparse.Namespace) -> int:
    from e2e_drive.render import render_agent

    result = render_agent(args.env, args.agent, args.out, camera=args.camera, seconds=args.seconds, seed=args.seed)
    print(f"wrote {result['frames']} frames at {result['fps']} Hz")
    print(f"video:     {Path(result['video']).resolve()}")
    for p in result["snapshots"]:
        print(f"snapshot:  {Path(p).resolve()}")
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from e2e_drive.benchmark import DEFAULT_SEED, run_benchmark

    if args.full and args.suite not in (None, "full"):
        raise ConfigError(f"--full is --suite full; it cannot go with --suite {args.suite}")
    suite = "full" if args.full else (args.suite or "default")
    command = "e2e-drive benchmark" + (f" --suite {suite}" if suite != "default" else "") + (
        f" --episodes {args.episodes}" if args.episodes else "") + (
        f" --difficulty {args.difficulty}" if args.difficulty else "") + (
        f" --seed {args.seed}" if args.seed is not None else "") + "".join(
        f" --{flag} {value}" for flag, value in (("scenarios", args.scenarios), ("conditions", args.conditions),
                                                  ("baselines", args.baselines)) if value) + "".join(
        f" --agent {a}" for a in args.agent or ())
    run_benchmark(suite=suite, episodes=args.episodes,
                  seed=DEFAULT_SEED if args.seed is None else args.seed, out=args.out,
                  workers=args.workers, backend=args.backend, address=args.address, report=not args.no_report,
                  readme=args.readme, command=command, memory_limit_gb=args.memory_limit_gb,
                  difficulties=args.difficulty, agents=args.agent or (), scenarios=_names(args.scenarios),
                  conditions=_names(args.conditions), baselines=_names(args.baselines), bundle=not args.no_bundle)
    return 0


def _names(value: str | None) -> list[str] | None:
    """A comma-separated list of names (None when not given)."""
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _cmd_verify(args: argparse.Namespace) -> int:
    from e2e_drive.eval.bundle import verify_bundle

    overrides = {}
    for item in args.agent or ():
        label, sep, spec = item.partition("=")
        if not sep or not label or not spec:
            raise ConfigError(f"--agent {item!r}: expected LABEL=SPEC (an agent file or package.module:Class)")
        overrides[label] = spec
    if args.sample is not None and args.sample < 1:
        raise ConfigError(f"--sample {args.sample}: expected a positive integer")
    result = verify_bundle(args.bundle, None if args.all else args.sample, agents=overrides, workers=args.workers,
                           sample_seed=args.sample_seed)
    return 0 if result["matched"] == result["checked"] else 1


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from e2e_drive.eval.leaderboard import write_leaderboard

    board = write_leaderboard(args.bundles, args.out, require_verified=args.require_verified)
    t = board["tables"]["overall"]
    width = [max(len(str(x)) for x in col) for col in zip(t["head"], *t["rows"])]
    for row in [t["head"], *t["rows"]]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, width)))
    print(f"markdown: {Path(board['markdown']).resolve()}")
    print(f"html:     {Path(board['html']).resolve()}")
    return 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    from e2e_drive.render import write_gallery

    result = write_gallery(args.files or None, args.out, seed=args.seed, agent_spec=args.agent,
                           progress=not args.no_progress)
    for e in result["scenarios"]:
        print(f"{e['scenario']}: {e['moment']}: {Path(e['dashcam']).resolve()}, {Path(e['bev']).resolve()}")
    print(f"markdown: {Path(result['markdown']).resolve()}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from e2e_drive.calibration import run_calibration

    command = "e2e-drive calibrate" + (f" --episodes {args.episodes}" if args.episodes != 50 else "")
    result = run_calibration(envs=args.env, agents=args.agent, episodes=args.episodes, seed=args.seed,
                             levels=args.difficulty, out=args.out, workers=args.workers, readme=args.readme,
                             progress=not args.no_progress, command=command)
    return 0 if all(ok for ok, _ in result["checks"]) else 1


def _cmd_validate(args: argparse.Namespace) -> int:
    from e2e_drive.config import load_toml
    from e2e_drive.scenarios import load_scenario

    for path in args.files:
        kind = _file_kind(path, load_toml(path) if not path.lower().endswith((".yaml", ".yml")) else None)
        logger.debug("%s: checking it as a %s file", path, kind)
        if kind == "scenario":
            load_scenario(path)
        else:
            from e2e_drive.agents.loading import load_agent_file

            load_agent_file(path)
        print(f"ok: {path} ({kind})")
    return 0


def _file_kind(path: str, data: dict | None) -> str:
    """The kind of a file given to validate: a scenario (it names an env ``id``) or an agent (a ``type``
    or ``class``; YAML files are agent files). Anything else is a ConfigError saying what was expected."""
    if data is None:
        return "agent"
    if "id" in data:
        return "scenario"
    if "type" in data or "class" in data:
        return "agent"
    found = f"keys {', '.join(sorted(data))}" if data else "an empty file"
    raise ConfigError(f"{path}: neither a scenario file (needs key 'id') nor an agent file (needs key 'type' or "
                      f"'class'); found {found}")


def _cmd_bench(args: argparse.Namespace) -> int:
    from e2e_drive.bench import run_bench, update_readme

    report = run_bench(parts=args.only, quick=args.quick)
    print(report)
    if args.readme:
        update_readme(args.readme, report, "e2e-drive bench" + (" --quick" if args.quick else "")
                      + (f" --only {' '.join(args.only)}" if args.only else ""))
        print(f"README speed figures updated: {Path(args.readme).resolve()}")
    return 0


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a camera clip (VP8 .webm + PNG snapshots) of a scenario",
                       description="Drive a scenario and write what a camera sees to OUT/<camera>.webm "
                                   "and PNG snapshots. Without --agent the ego coasts straight.")
    p.add_argument("--env", default=None, help="scenario file (envs/*.toml); default: the built-in highway")
    p.add_argument("--camera", default=None, help="camera name in the scenario (default: the agent's first declared camera, "
                                                        "else the scenario's first)")
    p.add_argument("--seconds", type=float, default=10.0, help="clip length in simulated seconds (default 10)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--agent", default=None, help="agent file (agents/*.toml) or package.module:Class to drive")
    p.add_argument("--out", default="runs/render", help="output folder (default runs/render)")
    p.set_defaults(func=_cmd_render)


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("benchmark", help="the main job: the ability suite (suite v2), tables, ability scores, report",
                       description="Run suite v2, the ability suite: every scenario of envs/abilities/ with the "
                                   "end-to-end agent and the modular stack (camera), each also behind the safety "
                                   "filter, the privileged expert and the blind baseline, under training "
                                   "conditions, new traffic and new visuals, on 30 paired seeds; print the tables "
                                   "(success, km between infractions, ability scores) with intervals, the findings "
                                   "and the wall time, and write the HTML report. Results name their suite "
                                   "version; numbers from different versions are never compared. --suite classic "
                                   "runs suite v1 (highway and racetrack, 20 seeds). --agent adds your agents and "
                                   "ranks every agent (rank ranges, shared where the intervals cannot separate "
                                   "them); OUT/bundle.json.gz is the result for others to check (e2e-drive verify). "
                                   "Re-running resumes an interrupted run, and reuses the episodes of unchanged "
                                   "agents.",
                       epilog="example: e2e-drive benchmark --agent my_agent:MyDriver --episodes 5\n"
                              "example: e2e-drive benchmark --difficulty easy,medium,hard --readme README.md",
                       formatter_class=HelpWithExamples)
    p.add_argument("--suite", default=None, choices=_suite_names(),
                   help="default: the ability suite (suite v2); full: it under every condition with 100 seeds; "
                        "classic: suite v1, highway and racetrack")
    p.add_argument("--difficulty", default=None, metavar="LEVELS",
                   help="comma-separated difficulty levels (easy,medium,hard) to run every scenario at (default: "
                        "each file's own level); see e2e-drive evaluate --help")
    p.add_argument("--episodes", type=int, default=None, help="paired seeds per agent, scenario and condition "
                                                              "(default: the suite's: 30, 100 with --full, 20 for "
                                                              "classic)")
    p.add_argument("--seed", type=int, default=None,
                   help="first seed (default 20000: held out from all training and tuning)")
    p.add_argument("--out", default=None, help="run directory (default runs/benchmark_v2, runs/benchmark_SUITE; "
                                               "with --difficulty, the levels are appended: runs/benchmark_v2_easy-hard)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--backend", choices=("process", "ray"), default="process",
                   help="process pool (default) or a Ray cluster (pip install e2e-drive[ray])")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    p.add_argument("--memory-limit-gb", type=float, default=None, metavar="GB",
                   help="memory each worker process may allocate; an episode over it is 'resource_error' "
                        "(default: 75%% of this machine's memory; 0 = no limit)")
    p.add_argument("--full", action="store_true", help="--suite full: the ability suite under every condition with "
                                                       "100 seeds, for a cluster")
    p.add_argument("--agent", action="append", default=None, metavar="SPEC",
                   help="your agent (an agent file or package.module:Class), run beside the shipped agents on the "
                        "same seeds and ranked with them; repeat for several. Episodes of unchanged agents are "
                        "reused from an earlier run in --out, so adding an agent costs only its own episodes")
    p.add_argument("--scenarios", default=None, metavar="NAMES",
                   help="comma-separated subset of the suite's scenarios (file names without .toml), for a quick "
                        "look; default: all")
    p.add_argument("--conditions", default=None, metavar="NAMES",
                   help="comma-separated subset of the suite's conditions (train, dense_traffic, night_noise); "
                        "default: all")
    p.add_argument("--baselines", default=None, metavar="LABELS",
                   help="comma-separated subset of the shipped agents (e2e, e2e_safety, modular, modular_safety, "
                        "expert, blind); default: all")
    p.add_argument("--no-bundle", action="store_true", help="do not write the result bundle OUT/bundle.json.gz")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--readme", default=None, metavar="README.md",
                   help="also regenerate the README's Results section from this run")
    p.set_defaults(func=_cmd_benchmark)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from e2e_drive.calibration import CALIBRATION_EPISODES, CALIBRATION_SEED
    p = sub.add_parser("calibrate", help="check that every ability-suite scenario measures what its name says",
                       description="Run the expert, the blind baseline and the modular stack on every scenario of "
                                   "the ability suite (envs/abilities) at every difficulty level on held-out seeds; "
                                   "print the scenario x difficulty success table and whether the suite's rules "
                                   "hold (expert >= 95%, blind <= 50% where the scenario tests interaction, success "
                                   "not rising from easy to hard). Exit status 1 when a rule fails. Re-running the "
                                   "same command resumes.",
                       epilog="example: e2e-drive calibrate --episodes 10 --out runs/calibration_quick",
                       formatter_class=HelpWithExamples)
    p.add_argument("--env", action="append", default=None, help="scenario file (repeatable; default: envs/abilities)")
    p.add_argument("--agent", action="append", default=None,
                   help="agent file (repeatable; default: expert, blind, modular)")
    p.add_argument("--episodes", type=int, default=CALIBRATION_EPISODES,
                   help=f"seeds per scenario, level and agent (default {CALIBRATION_EPISODES})")
    p.add_argument("--seed", type=int, default=CALIBRATION_SEED, help=f"first seed (default {CALIBRATION_SEED})")
    p.add_argument("--difficulty", default="easy,medium,hard", help="levels (default easy,medium,hard)")
    p.add_argument("--out", default="runs/calibration", help="run directory (default runs/calibration)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--readme", default=None, metavar="README.md",
                   help="also write the table between the README's calibration markers")
    p.set_defaults(func=_cmd_calibrate)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-run a sample of a result bundle's episodes and check they match",
                       description="Re-run a sample (or, with --all, every one) of a result bundle's episodes with "
                                   "the agents at hand, and say whether each new episode line matches the bundle's, "
                                   "timings aside; a mismatch names what changed (the agent's file, checkpoint or "
                                   "code, the scenario's code, the toolkit's version, code or libraries). Writes "
                                   "NAME.verified.json beside the bundle (e2e-drive leaderboard shows it). Exit "
                                   "status 1 when an episode does not match; 2 for a tampered bundle or an agent "
                                   "that cannot be loaded.",
                       epilog="example: e2e-drive verify runs/benchmark_v2/bundle.json.gz --sample 20",
                       formatter_class=HelpWithExamples)
    p.add_argument("bundle", help="result bundle (OUT/bundle.json.gz of e2e-drive benchmark, or its directory)")
    p.add_argument("--sample", type=int, default=12, help="episodes to re-run, spread over the agents (default 12)")
    p.add_argument("--all", action="store_true", help="re-run every episode of the bundle")
    p.add_argument("--sample-seed", type=int, default=None,
                   help="seed of the sample (default: a fresh one, printed, so a submitter cannot foresee it)")
    p.add_argument("--agent", action="append", default=None, metavar="LABEL=SPEC",
                   help="load agent LABEL from SPEC instead of the path the bundle names (repeatable)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1; 0 = in this process)")
    p.set_defaults(func=_cmd_verify)


def _add_leaderboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="merge result bundles of one suite version into one ranked table",
                       description="Merge result bundles (digests checked) of the same suite version and the same "
                                   "episodes into one ranking: rank ranges by the driving score and per ability, "
                                   "shared where the intervals cannot separate agents; writes OUT/leaderboard.md "
                                   "and OUT/leaderboard.html. Shows each bundle's verification (e2e-drive verify). "
                                   "A bundle of another suite version or a tampered one is refused.",
                       epilog="example: e2e-drive leaderboard alice/bundle.json.gz bob/bundle.json.gz --out "
                              "leaderboard",
                       formatter_class=HelpWithExamples)
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="result bundles (or run directories holding one)")
    p.add_argument("--out", default="leaderboard", help="output folder (default leaderboard)")
    p.add_argument("--require-verified", action="store_true",
                   help="refuse a bundle without a passing e2e-drive verify beside it")
    p.set_defaults(func=_cmd_leaderboard)


def _suite_names() -> list[str]:
    from e2e_drive.benchmark import SUITES

    return list(SUITES)


def _add_gallery(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gallery", help="one dashcam and one bird's-eye PNG per scenario at its key moment",
                       description="Drive each scenario file with the privileged expert on one seed until its "
                                   "first scripted event (a cut-in, a brake, ...), or to mid-episode when it has "
                                   "none, and write that step's dashcam and bird's-eye frames as OUT/<name>_dashcam"
                                   ".png and OUT/<name>_bev.png, with OUT/gallery.md listing them (for the README).",
                       epilog="example: e2e-drive gallery envs/abilities/cut_in.toml envs/abilities/lead_brake.toml "
                              "--out docs/gallery",
                       formatter_class=HelpWithExamples)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="scenario files (default: every file of envs/abilities/)")
    p.add_argument("--out", default="docs/gallery", help="output folder (default docs/gallery)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (default 0)")
    p.add_argument("--agent", default=None, help="driver (default: agents/expert.toml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_gallery)


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check scenario and agent files strictly",
                       description="Load and validate scenario files (envs/) and agent files (agents/).")
    p.add_argument("files", nargs="+", help="files to check")
    p.set_defaults(func=_cmd_validate)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed figures (ratios measured in one run)",
                       description="Measure cameras, env steps and traffic cores in one run and print "
                                   "the figures with ratios against references measured in the same run.")
    p.add_argument("--only", nargs="*", default=None, help="parts to run (default: all); see the list printed")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (noisier figures)")
    p.add_argument("--readme", default=None, metavar="README.md",
                   help="also write the figures between the README's bench-results markers")
    p.set_defaults(func=_cmd_bench)


#: Subcommand name -> function adding its parser (a registry, not an if/elif chain).
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "benchmark": _add_benchmark,
    "verify": _add_verify,
    "leaderboard": _add_leaderboard,
    "calibrate": _add_calibrate,
    "render": _add_render,
    "gallery": _add_gallery,
    "validate": _add_validate,
    "bench": _add_bench,
    "evaluate": lambda sub: importlib.import_module("e2e_drive.eval.cli_commands").add_evaluate(sub),
    "compare": lambda sub: importlib.import_module("e2e_drive.eval.cli_commands").add_compare(sub),
    "report": lambda sub: importlib.import_module("e2e_drive.eval.cli_commands").add_report(sub),
    "attribute": lambda sub: importlib.import_module("e2e_drive.eval.attribution").add_attribute(sub),
    "perception-eval": lambda sub: importlib.import_module(
        "e2e_drive.agents.modular.perception_eval").add_perception_eval(sub),
    "collect": lambda sub: importlib.import_module("e2e_drive.learning.cli_commands").add_collect(sub),
    "train": lambda sub: importlib.import_module("e2e_drive.learning.cli_commands").add_train(sub),
    "dagger": lambda sub: importlib.import_module("e2e_drive.learning.cli_commands").add_dagger(sub),
    "rl-finetune": lambda sub: importlib.import_module("e2e_drive.learning.cli_commands").add_rl_finetune(sub),
    "train-perception": lambda sub: importlib.import_module("e2e_drive.learning.cli_commands").add_train_perception(
        sub),
    "export-minari": lambda sub: importlib.import_module("e2e_drive.learning.minari_export").add_export_minari(sub),
}


#: The example line of each command's --help that does not set its own (every command's help ends with one).
EXAMPLES: dict[str, str] = {
    "render": "e2e-drive render --env envs/abilities/cut_in.toml --agent agents/expert.toml --seconds 6 --out runs/render",
    "validate": "e2e-drive validate envs/abilities/cut_in.toml agents/expert.toml",
    "bench": "e2e-drive bench --quick",
    "attribute": "e2e-drive attribute runs/cut_in --agent modular --before-s 3",
    "perception-eval": "e2e-drive perception-eval --env envs/highway.toml --episodes 2 --agent agents/modular.toml",
    "collect": "e2e-drive collect --env envs/highway.toml --expert agents/expert.toml --episodes 4 --out runs/demos",
    "train": "e2e-drive train --agent agents/e2e.toml --data runs/demos --out runs/bc --epochs 2",
    "dagger": "e2e-drive dagger --agent agents/e2e.toml --env envs/highway.toml --rounds 2 --episodes-per-round 4 "
              "--data runs/demos --out runs/dagger",
    "train-perception": "e2e-drive train-perception --agent agents/modular_learned.toml --data runs/demos "
                        "--out runs/perception --epochs 2",
    "rl-finetune": "e2e-drive rl-finetune --agent agents/e2e.toml --env envs/highway.toml --steps 2048 --out runs/ppo",
    "export-minari": "e2e-drive export-minari --data runs/demos --dataset-id e2e_drive/highway-expert-v0",
}


#: Each command's line in ``e2e-drive --help`` (the ``help`` its parser is added with; a test checks they
#: agree), so that the program's parser lists every command without importing the commands' modules.
SUMMARIES: dict[str, str] = {
    "benchmark": "the main job: the ability suite (suite v2), tables, ability scores, report",
    "verify": "re-run a sample of a result bundle's episodes and check they match",
    "leaderboard": "merge result bundles of one suite version into one ranked table",
    "calibrate": "check that every ability-suite scenario measures what its name says",
    "render": "render a camera clip (VP8 .webm + PNG snapshots) of a scenario",
    "gallery": "one dashcam and one bird's-eye PNG per scenario at its key moment",
    "validate": "check scenario and agent files strictly",
    "bench": "speed figures (ratios measured in one run)",
    "evaluate": "run agents on scenarios x conditions x paired seeds (parallel, resumable)",
    "compare": "paired differences against a baseline agent, with intervals and tests",
    "report": "one self-contained HTML report (tables, plots, videos) and a Markdown summary",
    "attribute": "why each failure happened (perception / decision / control / unavoidable) and whether each "
                 "safety-filter trigger was needed (counterfactual forks)",
    "perception-eval": "measure camera perception against ground truth",
    "collect": "drive the expert and store demonstrations (one shard per episode)",
    "train": "behaviour cloning (end2end, two_stage or aux) from demonstration shards",
    "dagger": "DAgger: the learner drives, the expert labels, aggregate, retrain",
    "rl-finetune": "PPO fine-tuning of a cloned e2e policy on a scenario's reward",
    "train-perception": "train the modular stack's learned perception (a small CNN on the perception labels) "
                        "from demonstration shards",
    "export-minari": "export demonstration shards to a Minari dataset (extra: minari)",
}


def _add_examples(sub: argparse._SubParsersAction) -> None:
    """Give every command without an epilog its example line from :data:`EXAMPLES`."""
    for name, parser in sub.choices.items():
        if parser.epilog is None and name in EXAMPLES:
            parser.epilog = f"example: {EXAMPLES[name]}"
            parser.formatter_class = HelpWithExamples


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The program's parser. By default every command's parser is built in full (importing each command's
    modules: torch, highway-env, scipy). With `commands`, only those are; every other command is listed
    with its :data:`SUMMARIES` line (so ``e2e-drive --help`` and the unknown-command error are the same)
    but takes no arguments of its own: :func:`main` builds just the command it is given."""
    full = set(COMMANDS) if commands is None else set(commands)
    parser = argparse.ArgumentParser(prog="e2e-drive", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the full traceback (may also follow the command)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only warnings and errors on stderr (may also follow the command)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also debug lines on stderr (may also follow the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, add in COMMANDS.items():
        if name in full:
            add(sub)
        else:
            sub.add_parser(name, help=SUMMARIES[name])
    _add_examples(sub)
    return parser


def _error(command: str, message: str, exc: BaseException, debug: bool) -> int:
    """Log the error as one line (after the full traceback with ``--debug``); return status 2."""
    if debug:
        logger.error("%s", "".join(traceback.format_exception(exc)).rstrip("\n"))
    logger.error("e2e-drive %s: error: %s", command, " ".join(message.split()))
    return 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a batch scheduler): unwinds like Ctrl-C, so worker processes are stopped
    and a re-run resumes."""


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated()


#: Options of the whole program that may also follow the command (taken out before parsing).
_GLOBAL_FLAGS = frozenset({"--debug", "-q", "--quiet", "-v", "--verbose"})
_NOT_SHOWN = ("func", "command", "debug", "quiet", "verbose")  # left out of the --verbose line of arguments


def main(argv: list[str] | None = None) -> int:
    # A user's own agent is named "module:Class": import it from the working directory, as
    # `python -m e2e_drive` would (console scripts do not put the working directory on sys.path).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug, -q/--quiet and -v/--verbose are accepted before or after the command (not after "--")
    cut = argv.index("--") if "--" in argv else len(argv)
    given = {a for a in argv[:cut] if a in _GLOBAL_FLAGS}
    argv = [a for i, a in enumerate(argv) if i >= cut or a not in _GLOBAL_FLAGS]
    debug = "--debug" in given
    quiet, verbose = bool(given & {"-q", "--quiet"}), bool(given & {"-v", "--verbose"})
    # Only the command given is built in full (its modules imported); none for --help or a bad command.
    parser = build_parser([argv[0]] if argv and argv[0] in COMMANDS else [])
    if quiet and verbose:
        parser.error("-q/--quiet and -v/--verbose exclude each other")
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    with log.command_output(log.QUIET if quiet else log.VERBOSE if verbose else log.NORMAL):
        logger.debug("e2e-drive %s: %s", args.command,
                     ", ".join(f"{k}={v!r}" for k, v in vars(args).items() if k not in _NOT_SHOWN))
        try:
            return args.func(args)
        except (ConfigError, CheckpointError) as exc:
            return _error(args.command, str(exc), exc, debug)
        except OSError as exc:  # a path the user named that cannot be read or written (disk full, permissions, ...)
            where = f"{exc.filename}: " if exc.filename else ""
            return _error(args.command, f"{where}{exc.strerror or exc}", exc, debug)
        except KeyboardInterrupt as exc:
            logger.warning("e2e-drive %s: interrupted", args.command)
            return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())

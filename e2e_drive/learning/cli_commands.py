"""``e2e-drive collect``, ``train``, ``dagger``, ``rl-finetune``: argument parsing only; the work is in the library."""

from __future__ import annotations

import argparse
import ast
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from e2e_drive.errors import ConfigError


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> dict; VALUE parsed as a Python/TOML-like literal when it is one."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = {"true": True, "false": False}.get(value, value)
    return out


def _command() -> str:
    return "e2e-drive " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _levels(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def _suite(args: argparse.Namespace) -> list | None:
    """The scenario-levels of several --env files or of --difficulty (None: one scenario, the old layout)."""
    from e2e_drive.learning.collect import suite_tasks

    envs = args.env or [None]
    if len(envs) == 1 and not args.difficulty:
        return None
    return suite_tasks(envs, _levels(args.difficulty), parse_overrides(args.set))


def _cmd_collect(args: argparse.Namespace) -> int:
    from e2e_drive.learning.collect import collect, collect_suite

    tasks = _suite(args)
    if tasks is not None:
        reports = collect_suite(tasks, args.expert, args.episodes, args.out, workers=args.workers, seed=args.seed,
                                recovery_share=args.recovery_share, preset=args.preset, progress=not args.no_progress)
        for name, rep in reports.items():
            print(f"{name}: collected {len(rep.written)} episodes ({sum(w['steps'] for w in rep.written)} steps); "
                  f"skipped {len(rep.skipped)} already there; redid {len(rep.corrupt)} corrupt")
        return 0
    report = collect(args.env[0] if args.env else None, args.expert, args.episodes, args.out, workers=args.workers, seed=args.seed,
                     recovery_share=args.recovery_share, overrides=parse_overrides(args.set), preset=args.preset,
                     progress=not args.no_progress)
    ratio = report.compression_ratio
    print(f"collected {len(report.written)} episodes ({sum(w['steps'] for w in report.written)} steps, "
          f"{sum(w['recovery_views'] for w in report.written)} recovery views) into {args.out}; "
          f"skipped {len(report.skipped)} already there; redid {len(report.corrupt)} corrupt"
          + (f"; frames compressed {ratio:.0f}x" if ratio else ""))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from e2e_drive.learning.config import read_agent_tables
    from e2e_drive.learning.train import train

    tables = read_agent_tables(args.agent)
    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: expected an integer >= 1")
    cfg = tables.train if args.epochs is None else dataclasses.replace(tables.train, epochs=args.epochs)
    card = train(tables.model, cfg, args.data, args.out, mode=args.mode, seed=args.seed, command=_command(),
                 init_checkpoint=args.init, progress=not args.no_progress, tensorboard=args.tensorboard)
    val = card.get("validation", {})
    print(json.dumps({"out": args.out, "mode": args.mode, "seed": args.seed, "size_bytes": card.get("size_bytes"),
                      "val_action": val.get("val_action"), "val_steering_mae": val.get("val_steering_mae"),
                      "samples_per_s": val.get("samples_per_s")}))
    return 0


def _cmd_dagger(args: argparse.Namespace) -> int:
    from e2e_drive.learning.config import read_agent_tables
    from e2e_drive.learning.dagger import dagger

    tables = read_agent_tables(args.agent)
    card = dagger(tables, args.env[0] if args.env else None, args.expert, args.rounds, args.episodes_per_round,
                  args.data, args.out, mode=args.mode, seed=args.seed, workers=args.workers, init_checkpoint=args.init,
                  overrides=parse_overrides(args.set), command=_command(), progress=not args.no_progress,
                  tensorboard=args.tensorboard, tasks=_suite(args))
    print(json.dumps({"out": args.out, "rounds": args.rounds, "history": card["dagger"]["history"]}))
    return 0


def add_collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="drive the expert and store demonstrations (one shard per episode)",
                       description="Drive the privileged expert and store per step the camera frames, speed, "
                                   "the expert's action and perception labels. Resumable: finished episodes "
                                   "are skipped, corrupt shards reported and redone.")
    p.add_argument("--env", action="append", default=None,
                   help="scenario file (envs/*.toml); default: the built-in highway. Several (or --difficulty): "
                        "each scenario-level into OUT/<stem>@<level>/")
    p.add_argument("--difficulty", default=None,
                   help="levels to collect every (ability-suite) scenario at, e.g. easy,medium,hard")
    p.add_argument("--expert", default="agents/expert.toml", help="expert agent file (default agents/expert.toml)")
    p.add_argument("--episodes", type=int, required=True,
                   help="number of episodes (seeds SEED .. SEED+N-1; per scenario-level with several)")
    p.add_argument("--out", required=True, help="output folder for the shards")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")
    p.add_argument("--recovery-share", type=float, default=0.3,
                   help="share of steps with an extra shifted/turned recovery view (default 0.3; 0 = none)")
    p.add_argument("--preset", type=int, default=6, help="LZMA preset 0-9 (default 6; 9 is smaller and slower)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario config key")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_collect)


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="behaviour cloning (end2end, two_stage or aux) from demonstration shards",
                       description="Train the agent file's model ([params.model]) with its [params.train] "
                                   "hyperparameters. Ctrl-C, then the same command, resumes.")
    p.add_argument("--agent", required=True, help="e2e agent file (agents/e2e.toml)")
    p.add_argument("--data", nargs="+", required=True, help="folders (or files) of *.shard")
    p.add_argument("--out", required=True, help="run folder (logs, last.pt, model.pt + model.json)")
    p.add_argument("--mode", default="end2end", choices=["end2end", "two_stage", "aux"], help="training mode")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and dropout (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--init", default=None, help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to RUN/tensorboard (needs the extra: pip install -e '.[tensorboard]')")
    p.set_defaults(func=_cmd_train)


def add_dagger(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dagger", help="DAgger: the learner drives, the expert labels, aggregate, retrain",
                       description="K rounds of DAgger with the beta schedule of the agent file's [params.dagger].")
    p.add_argument("--agent", required=True, help="e2e agent file (agents/e2e.toml)")
    p.add_argument("--env", action="append", default=None,
                   help="scenario file (envs/*.toml); several (or --difficulty): rounds shared between the "
                        "scenario-levels by [params.dagger] weighting")
    p.add_argument("--difficulty", default=None, help="levels of every (ability-suite) scenario, e.g. easy,medium,hard")
    p.add_argument("--expert", default="agents/expert.toml", help="expert agent file")
    p.add_argument("--rounds", type=int, required=True, help="DAgger rounds K")
    p.add_argument("--episodes-per-round", type=int, required=True, help="episodes collected per round M")
    p.add_argument("--data", required=True, help="data folder: initial shards; rounds go to DATA/dagger/round_i")
    p.add_argument("--out", required=True, help="run folder (round_i/ per round, model.pt at the end)")
    p.add_argument("--mode", default="end2end", choices=["end2end", "two_stage", "aux"], help="training mode")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--workers", type=int, default=1, help="collection worker processes")
    p.add_argument("--init", default=None, help="initial policy checkpoint (default: BC on --data first)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario config key")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to RUN/round_i/tensorboard (needs the extra: pip install -e '.[tensorboard]')")
    p.set_defaults(func=_cmd_dagger)


def _cmd_rl_finetune(args: argparse.Namespace) -> int:
    from e2e_drive.learning.rl import read_rl_tables, rl_finetune

    tables = read_rl_tables(args.agent)
    init = Path(args.init) if args.init else tables.checkpoint
    if init is None:
        raise ConfigError(f"{args.agent}: params.checkpoint is not set; give --init")
    if not init.is_file():
        raise ConfigError(f"{args.agent}: checkpoint {init} not found" if not args.init
                          else f"--init {init}: checkpoint not found")
    card = rl_finetune(init, args.env, args.out, steps=args.steps, cfg=tables.rl, n_envs=args.envs, seed=args.seed,
                       device=args.device, overrides=parse_overrides(args.set), expected_model=tables.model,
                       progress=not args.no_progress, command=_command())
    last = card["rl"]["last_iteration"]
    print(json.dumps({"out": args.out, "env_steps": card["rl"]["env_steps"], "iterations": card["rl"]["iterations"],
                      "episode_return": last.get("episode_return"), "wall_s": card["rl"]["wall_s"]}))
    return 0


def add_rl_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rl-finetune", help="PPO fine-tuning of a cloned e2e policy on a scenario's reward",
                       description="Fine-tune the agent file's checkpoint with PPO ([params.rl] hyperparameters, "
                                   "optional). Ctrl-C, then the same command, resumes.")
    p.add_argument("--agent", required=True, help="e2e agent file (agents/e2e.toml)")
    p.add_argument("--env", default=None, help="scenario file (envs/*.toml); default: the built-in highway")
    p.add_argument("--init", default=None, help="start from this checkpoint (default: the agent file's checkpoint)")
    p.add_argument("--steps", type=int, required=True, help="env steps in all (rounded up to whole iterations)")
    p.add_argument("--envs", type=int, default=1, help="parallel envs, one worker process each when > 1 (default 1)")
    p.add_argument("--out", required=True, help="run folder (logs, last.pt, model.pt + model.json)")
    p.add_argument("--seed", type=int, default=0, help="seed for the critic's init, noise and episodes (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="torch device (default auto)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a scenario config key")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_rl_finetune)


def add_train_perception(sub: argparse._SubParsersAction) -> None:
    from e2e_drive.learning import perception_train

    p = sub.add_parser("train-perception", help="train the modular stack's learned perception (a small CNN on the "
                                                "perception labels) from demonstration shards",
                       description=perception_train.DESCRIPTION)
    perception_train.add_arguments(p)
    p.set_defaults(func=lambda args: perception_train.run(args, _command()))

"""Copy a trained run's ``model.pt`` + ``model.json`` to a shipped checkpoint, recording the recipe.

    python -m e2e_drive.learning.ship runs/e2e_default/model.pt agents/checkpoints/e2e_default.pt \
        --recipe agents/checkpoints/make_e2e_default.sh [--figures FILE.json]

The shipped model card gets ``recipe`` (the script's commands, in order) and, with
``--figures``, measured figures (closed-loop evaluation) next to the training card.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from e2e_drive.nets.checkpoints import atomic_write_text, card_path, load_checkpoint


def ship(src: Path, dst: Path, recipe: Path | None = None, figures: Path | None = None) -> dict:
    load_checkpoint(src)  # refuse to ship something that does not load
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    card = json.loads(card_path(src).read_text())
    card["checkpoint"] = dst.name
    if recipe is not None:
        card["recipe"] = {"script": str(recipe), "commands": [
            line.strip() for line in recipe.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "set "))]}
    if figures is not None:
        card["evaluation"] = json.loads(figures.read_text())
    card["size_bytes"] = dst.stat().st_size
    atomic_write_text(json.dumps(card, indent=2, default=str) + "\n", card_path(dst))
    return card


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--recipe", type=Path, default=None)
    p.add_argument("--figures", type=Path, default=None)
    args = p.parse_args(argv)
    card = ship(args.src, args.dst, args.recipe, args.figures)
    print(f"shipped {args.dst} ({card['size_bytes'] / 1e6:.2f} MB) with card {card_path(args.dst)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

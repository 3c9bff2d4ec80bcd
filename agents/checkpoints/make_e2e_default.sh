#!/bin/sh
# Reproduces agents/checkpoints/e2e_default.pt (+ .json) from scratch on CPUs, seeds fixed.
# Run from the repository root (`python3 -m e2e_drive` is the `e2e-drive` command). Expert data:
# 60 highway + 40 racetrack episodes (seeds 0..), 30% of steps with a recovery view; then
# 12 epochs of end-to-end behaviour cloning ([params.train] of agents/e2e.toml).
set -e
python3 -m e2e_drive collect --env envs/highway.toml --expert agents/expert.toml --episodes 60 --seed 0 --recovery-share 0.3 --workers 2 --out runs/e2e_default/data/highway
python3 -m e2e_drive collect --env envs/racetrack.toml --expert agents/expert.toml --episodes 40 --seed 0 --recovery-share 0.3 --workers 2 --out runs/e2e_default/data/racetrack
python3 -m e2e_drive train --agent agents/e2e.toml --data runs/e2e_default/data/highway runs/e2e_default/data/racetrack --mode end2end --seed 0 --out runs/e2e_default/train
python3 -m e2e_drive.learning.ship runs/e2e_default/train/model.pt agents/checkpoints/e2e_default.pt --recipe agents/checkpoints/make_e2e_default.sh

#!/bin/sh
# Reproduces agents/checkpoints/e2e_default.pt (+ .json) from scratch on CPUs, seeds fixed.
# Run from the repository root (`python3 -m e2e_drive` is the `e2e-drive` command). About 12 minutes
# on 2 cores.
# 1. Expert data: 60 highway + 40 racetrack episodes (seeds 0..), 30% of steps with a recovery view.
# 2. 12 epochs of end-to-end behaviour cloning ([params.train] of agents/e2e.toml).
# 3. DAgger from that policy on the highway: 4 rounds x 15 episodes (seeds 100000..), the expert driving
#    20%, 10%, 5%, 2.5% of the steps and labelling all of them; after each round 3 epochs of fine-tuning
#    on everything collected so far, racetrack data included ([params.dagger] of agents/e2e.toml).
set -e
python3 -m e2e_drive collect --env envs/highway.toml --expert agents/expert.toml --episodes 60 --seed 0 --recovery-share 0.3 --workers 2 --out runs/e2e_default/data/highway
python3 -m e2e_drive collect --env envs/racetrack.toml --expert agents/expert.toml --episodes 40 --seed 0 --recovery-share 0.3 --workers 2 --out runs/e2e_default/data/racetrack
python3 -m e2e_drive train --agent agents/e2e.toml --data runs/e2e_default/data/highway runs/e2e_default/data/racetrack --mode end2end --seed 0 --out runs/e2e_default/train
python3 -m e2e_drive dagger --agent agents/e2e.toml --env envs/highway.toml --rounds 4 --episodes-per-round 15 --workers 2 --data runs/e2e_default/data --init runs/e2e_default/train/model.pt --out runs/e2e_default/dagger
python3 -m e2e_drive.learning.ship runs/e2e_default/dagger/model.pt agents/checkpoints/e2e_default.pt --recipe agents/checkpoints/make_e2e_default.sh

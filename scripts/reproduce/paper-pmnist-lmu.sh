#!/usr/bin/env bash
# Reproduce paper-pmnist-lmu: studies/paper-pmnist-lmu.toml on pmnist,
# cells lmu.
# Published (value and source; scripts/reproduce/published.py holds them):
#   lmu: 97.15% (nengo/keras-lmu, branch paper, experiments/psMNIST-standard.ipynb: model.evaluate(X_test) -> [0.0925, 0.9715])
# The paper's selection: test once, at the epoch of best validation loss (the notebook's checkpoint).
# Cost: 1 cell x 7 runs x 10 epochs: about 1 GPU hour.
# GPU work: DEVICE=cuda DATA_DIR=/data scripts/reproduce/paper-pmnist-lmu.sh
source "$(dirname "$0")/common.sh"
run_preset paper-pmnist-lmu "pmnist" "lmu"

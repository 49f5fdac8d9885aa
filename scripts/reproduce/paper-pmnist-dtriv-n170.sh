#!/usr/bin/env bash
# Reproduce paper-pmnist-dtriv-n170: studies/paper-pmnist-dtriv-n170.toml on pmnist,
# cells dtriv, momentum_dtriv.
# Published (value and source; scripts/reproduce/published.py holds them):
#   dtriv: not transcribed (MomentumRNN Table 4, PMNIST, DTRIV family, DTRIV N = 170)
#   momentum_dtriv: not transcribed (MomentumRNN Table 4, PMNIST, DTRIV family, MomentumDTRIV N = 170)
# The paper's selection: the maximum test accuracy over the 150 epochs (mnist.py's best_test_acc).
# Cost: 2 cells x 7 runs x 150 epochs; ~21 s per epoch at n 256 on an H200 (graphed): about 12 GPU hours at n 170.
# GPU work: DEVICE=cuda DATA_DIR=/data scripts/reproduce/paper-pmnist-dtriv-n170.sh
source "$(dirname "$0")/common.sh"
run_preset paper-pmnist-dtriv-n170 "pmnist" "dtriv,momentum_dtriv"

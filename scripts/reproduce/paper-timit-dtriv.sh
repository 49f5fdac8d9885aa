#!/usr/bin/env bash
# Reproduce paper-timit-dtriv: studies/paper-timit-dtriv.toml on timit (the preset sets target=previous,eval=dev,loss_norm=padded,sa_filter=substring),
# cells dtriv, momentum_dtriv.
# Published (value and source; scripts/reproduce/published.py holds them):
#   dtriv: not transcribed (MomentumRNN Table 5, TIMIT, DTRIV family, N = 224, DTRIV)
#   momentum_dtriv: not transcribed (MomentumRNN Table 5, TIMIT, DTRIV family, N = 224, MomentumDTRIV)
# The paper's selection: timit_div.py prints both the 'test' (dev) MSE at the best 'val' epoch and the minimum 'test' MSE; which one the table reports, the code does not say.
# Cost: 2 cells x 7 runs x 700 epochs: not measured, GPU days.
# GPU work: DEVICE=cuda DATA_DIR=/data scripts/reproduce/paper-timit-dtriv.sh
source "$(dirname "$0")/common.sh"
run_preset paper-timit-dtriv "timit" "dtriv,momentum_dtriv"

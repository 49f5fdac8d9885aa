#!/usr/bin/env bash
# Reproduce paper-pmnist-nru: studies/paper-pmnist-nru.toml on pmnist,
# cells nru.
# Published (value and source; scripts/reproduce/published.py holds them):
#   nru: not transcribed (Chandar et al. (AAAI 2019) pMNIST table, NRU row)
# The paper's selection: as the NRU code selected (not checked here).
# Cost: 1 cell x 7 runs x 93 epochs; ~52 s per epoch on an H200: about 9 GPU hours.
# GPU work: DEVICE=cuda DATA_DIR=/data scripts/reproduce/paper-pmnist-nru.sh
source "$(dirname "$0")/common.sh"
run_preset paper-pmnist-nru "pmnist" "nru"

#!/usr/bin/env bash
# Reproduce paper-pmnist-lstm: studies/paper-pmnist-lstm.toml on pmnist,
# cells lstm/official_init, momentum_lstm, adam_lstm, rmsprop_lstm, sr_lstm.
# Published (value and source; scripts/reproduce/published.py holds them):
#   lstm/official_init: not transcribed (MomentumRNN (Nguyen et al., NeurIPS 2020) Table 1, PMNIST, N = 256, row LSTM)
#   momentum_lstm: not transcribed (MomentumRNN (Nguyen et al., NeurIPS 2020) Table 1, PMNIST, N = 256, row MomentumLSTM)
#   adam_lstm: not transcribed (MomentumRNN (Nguyen et al., NeurIPS 2020) Table 1, PMNIST, N = 256, row AdamLSTM)
#   rmsprop_lstm: not transcribed (MomentumRNN (Nguyen et al., NeurIPS 2020) Table 1, PMNIST, N = 256, row RMSPropLSTM)
#   sr_lstm: not transcribed (MomentumRNN (Nguyen et al., NeurIPS 2020) Table 1, PMNIST, N = 256, row SRLSTM)
# The paper's selection: the maximum test accuracy over the 150 epochs (mnist.py's best_test_acc).
# Cost: 5 cells x 7 runs x 150 epochs; ~12-16 s per epoch on an H200: about 20 GPU hours.
# GPU work: DEVICE=cuda DATA_DIR=/data scripts/reproduce/paper-pmnist-lstm.sh
source "$(dirname "$0")/common.sh"
run_preset paper-pmnist-lstm "pmnist" "lstm/official_init,momentum_lstm,adam_lstm,rmsprop_lstm,sr_lstm"

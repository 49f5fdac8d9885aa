#!/usr/bin/env bash
# Reproduce paper-timit-lstm: studies/paper-timit-lstm.toml on timit (the preset sets target=previous,eval=dev,loss_norm=padded,sa_filter=substring),
# cells lstm/official_init, momentum_lstm, adam_lstm, rmsprop_lstm, sr_lstm.
# Published (value and source; scripts/reproduce/published.py holds them):
#   lstm/official_init: not transcribed (MomentumRNN Table 2, TIMIT test MSE (the 400 dev utterances), N = 158, row LSTM)
#   momentum_lstm: not transcribed (MomentumRNN Table 2, TIMIT test MSE (the 400 dev utterances), N = 158, row MomentumLSTM)
#   adam_lstm: not transcribed (MomentumRNN Table 2, TIMIT test MSE (the 400 dev utterances), N = 158, row AdamLSTM)
#   rmsprop_lstm: not transcribed (MomentumRNN Table 2, TIMIT test MSE (the 400 dev utterances), N = 158, row RMSPropLSTM)
#   sr_lstm: not transcribed (MomentumRNN Table 2, TIMIT test MSE (the 400 dev utterances), N = 158, row SRLSTM)
# The paper's selection: timit.py prints both the 'test' (dev) MSE at the best 'val' (core test) epoch and the minimum 'test' MSE; which one the table reports, the code does not say.
# Cost: 5 cells x 7 runs x 700 epochs of 3,640 utterances: not measured, GPU days.
# GPU work: DEVICE=cuda DATA_DIR=/data scripts/reproduce/paper-timit-lstm.sh
source "$(dirname "$0")/common.sh"
run_preset paper-timit-lstm "timit" "lstm/official_init,momentum_lstm,adam_lstm,rmsprop_lstm,sr_lstm"

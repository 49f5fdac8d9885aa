#!/usr/bin/env bash
# Reproduce paper-copy: expRNN's 1_copying.py setting (copy L = 1000, batch 128, 4000 iterations
# of fresh samples, hidden 190, RMSprop 2e-4 / orthogonal 2e-5, dtriv K = 100 from Henaff's angles)
# for dtriv, momentum_dtriv, lstm and momentum_lstm, round-robin in one process, logging every
# iteration's loss on its fresh batch (the curve the papers draw), then a fixed test set.
# Published (scripts/reproduce/published.py): the dtriv and expRNN copy figures show dtriv at
# near-zero cross-entropy and the LSTM at the memoryless baseline 10 ln 8 / 1020 = 0.0204 (curves,
# no table); MomentumRNN has no copy task. Cost: ~3-8 s per iteration per cell on one CPU thread.
# Usage: scripts/reproduce/paper-copy.sh [ITERATIONS] [DEADLINE_MINUTES]  (defaults 4000, none)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-python}
OUT=${OUT:-runs/reproduce}
mkdir -p "$OUT"
args=(--iterations "${1:-4000}" --log "$OUT/paper-copy.jsonl")
[ -n "${2:-}" ] && args+=(--deadline-minutes "$2")
cd "$ROOT" && $PY scripts/reproduce/copy_task.py --cells dtriv,momentum_dtriv,lstm,momentum_lstm "${args[@]}"

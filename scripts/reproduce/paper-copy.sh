#!/usr/bin/env bash
# Reproduce paper-copy: expRNN's 1_copying.py setting (copy L = 1000, batch 128, 4000 iterations
# of fresh samples, hidden 190, RMSprop 2e-4 / orthogonal 2e-5, dtriv K = 100 from Henaff's angles)
# for dtriv, momentum_dtriv, lstm and momentum_lstm, logging every iteration's loss on its fresh
# batch (the curve the papers draw), then a fixed test set.
# Published (scripts/reproduce/published.py): the dtriv and expRNN copy figures show dtriv at
# near-zero cross-entropy and the LSTM at the memoryless baseline 10 ln 8 / 1020 = 0.0204 (curves,
# no table); MomentumRNN has no copy task. Cost: ~3-8 s per iteration per cell on one CPU thread.
# Usage: scripts/reproduce/paper-copy.sh [ITERATIONS] [DEADLINE_MINUTES]  (defaults 4000, none)
#   DEVICE=cuda   train on the GPU;
#   PARALLEL=1    one process per cell (each with its own log, joined at the end) instead of all
#                 four round-robin in one process: on a GPU the processes overlap their launches,
#                 and each cell then runs as many iterations as the deadline allows on its own.
# Ctrl-C (or a deadline) stops every cell after its current iteration and saves it beside its log
# (LOG.ckpt, also once a minute); the same command resumes each cell from there.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-python}
OUT=${OUT:-runs/reproduce}
CELLS=${CELLS:-dtriv,momentum_dtriv,lstm,momentum_lstm}
mkdir -p "$OUT"
args=(--iterations "${1:-4000}" --device "${DEVICE:-cpu}")
[ -n "${2:-}" ] && args+=(--deadline-minutes "$2")
cd "$ROOT"
if [ "${PARALLEL:-0}" = 1 ]; then
  for cell in ${CELLS//,/ }; do
    $PY scripts/reproduce/copy_task.py --cells "$cell" "${args[@]}" --log "$OUT/paper-copy-$cell.jsonl" \
      > "$OUT/paper-copy-$cell.out" 2>&1 &
  done
  wait
  for cell in ${CELLS//,/ }; do cat "$OUT/paper-copy-$cell.jsonl"; done > "$OUT/paper-copy.jsonl"
  $PY scripts/reproduce/copy_task.py --table "$OUT/paper-copy.jsonl" --iterations "${1:-4000}"
else
  $PY scripts/reproduce/copy_task.py --cells "$CELLS" "${args[@]}" --log "$OUT/paper-copy.jsonl"
fi

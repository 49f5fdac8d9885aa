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
# Every cell runs in its own session (setsid) and this script forwards SIGINT/SIGTERM to each once:
# a terminal's Ctrl-C and a `kill -INT` of this script's pid both stop every cell after its round
# (a second signal to a cell stops it at once, unsaved, so it must not get the terminal's too).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-python}
OUT=${OUT:-runs/reproduce}
CELLS=${CELLS:-dtriv,momentum_dtriv,lstm,momentum_lstm}
mkdir -p "$OUT"
args=(--iterations "${1:-4000}" --device "${DEVICE:-cpu}")
[ -n "${2:-}" ] && args+=(--deadline-minutes "$2")
cd "$ROOT"
pids=()
SETSID=$(command -v setsid || true)   # util-linux; without it a terminal's Ctrl-C reaches a cell twice
trap 'kill -INT "${pids[@]}" 2>/dev/null || true' INT
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM
finish() {  # wait for a cell; a forwarded signal interrupts `wait`, so wait until it has exited
  local rc
  while :; do rc=0; wait "$1" || rc=$?; kill -0 "$1" 2>/dev/null || return "$rc"; done
}
if [ "${PARALLEL:-0}" = 1 ]; then
  IFS=, read -ra cells <<< "$CELLS"
  for cell in "${cells[@]}"; do
    $SETSID $PY scripts/reproduce/copy_task.py --cells "$cell" "${args[@]}" \
      --log "$OUT/paper-copy-$cell.jsonl" > "$OUT/paper-copy-$cell.out" 2>&1 &
    pids+=($!)
  done
  worst=0
  for i in "${!cells[@]}"; do
    rc=0; finish "${pids[$i]}" || rc=$?
    if [ "$rc" != 0 ]; then
      echo "${cells[$i]}: exit $rc: $(tail -n 1 "$OUT/paper-copy-${cells[$i]}.out")" >&2
      [ "$rc" -gt "$worst" ] && worst=$rc
    fi
  done
  [ "$worst" = 0 ] || exit "$worst"
  for cell in "${cells[@]}"; do cat "$OUT/paper-copy-$cell.jsonl"; done > "$OUT/paper-copy.jsonl"
  $PY scripts/reproduce/copy_task.py --table "$OUT/paper-copy.jsonl" --iterations "${1:-4000}"
else
  $SETSID $PY scripts/reproduce/copy_task.py --cells "$CELLS" "${args[@]}" --log "$OUT/paper-copy.jsonl" &
  pids+=($!)
  finish "${pids[0]}"
fi

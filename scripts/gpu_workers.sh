#!/usr/bin/env bash
# Several workers per GPU: the same small run on one GPU with K = 1, 2, ... workers sharing it
# (`run --device cuda --workers-per-gpu K`), each K in its own journal storage, timed by wall
# clock; then the tables are compared (they must be identical: results do not depend on workers).
# The run: adding T = 50 under `default` shrunk to 2 trials, 2 seeds, 3 epochs (pruner warm-up 1),
# for a cuDNN cell pair and two CUDA-graphed cells; 16 units, each a few GPU-seconds, so the ratio
# says how much of a GPU one small-RNN worker leaves idle.
# Usage: scripts/gpu_workers.sh [OUTDIR]   (KS="1 4", CELLS=..., LIMIT=seconds per K, DEVICE=cpu
#        for a dry run on a CPU, where K becomes --workers K)
set -uo pipefail
OUT_DIR=${1:-gpu-workers}
KS=${KS:-1 4}
CELLS=${CELLS:-lstm,momentum_lstm,dtriv,janet}
LIMIT=${LIMIT:-300}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
sed -e 's/^trials *= *[0-9]*/trials = 2/' -e 's/^seeds *= *[0-9]*/seeds = 2/' \
    -e 's/^epochs *= *[0-9]*/epochs = 3/' -e 's/n_warmup_steps *= *[0-9]*/n_warmup_steps = 1/' \
    -e 's/^name *= *"default"/name = "default-gpu-workers"/' "$ROOT/studies/default.toml" > "$OUT_DIR/preset.toml"
cd "$ROOT"
for K in $KS; do
  flag=(--device cuda --workers-per-gpu "$K")
  [ "$DEVICE" = cpu ] && flag=(--device cpu --workers "$K")
  rm -f "$OUT_DIR/k$K.journal"
  start=$EPOCHREALTIME
  timeout "$LIMIT" $PY -m bench run --task adding --cells "$CELLS" --budget "$OUT_DIR/preset.toml" \
    --storage "journal:$OUT_DIR/k$K.journal" "${flag[@]}" --no-progress > "$OUT_DIR/k$K.md" 2> "$OUT_DIR/k$K.err"
  rc=$?
  echo "K=$K rc=$rc wall=$(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $start}") s" | tee -a "$OUT_DIR/times.txt"
  tail -3 "$OUT_DIR/k$K.err"
done
first=$(set -- $KS; echo "$1")
table() { sed -n '/^| cell/,$p' "$OUT_DIR/k$1.md"; }
for K in $KS; do
  if [ -z "$(table "$K")" ]; then
    echo "K=$K printed no table (see k$K.err)"
  elif cmp -s <(table "$first") <(table "$K"); then
    echo "K=$K table identical to K=$first"
  else
    echo "K=$K table DIFFERS from K=$first"
  fi
done | tee -a "$OUT_DIR/times.txt"
table "$first"

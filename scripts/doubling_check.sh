#!/usr/bin/env bash
# Does doubling the epochs flip a verdict? Runs CELLS on TASK under a preset and under the same
# preset with epochs (and the pruner's warm-up) doubled, each in its own storage, side by side
# (one process per core), then prints both tables. A verdict that differs between them is a
# finding about the budget, not about the cells.
# Usage: scripts/doubling_check.sh [PRESET] [OUTDIR]   (defaults: default, ./doubling)
set -euo pipefail
PRESET=${1:-default}
OUT=${2:-doubling}
TASK=${TASK:-adding}
CELLS=${CELLS:-lstm,gru,momentum_lstm,momentum_lstm/no_momentum}
PY=${PY:-python}
mkdir -p "$OUT"
src=$( [ -f "$PRESET" ] && echo "$PRESET" || echo "studies/$PRESET.toml" )
epochs=$(sed -n 's/^epochs *= *\([0-9]*\).*/\1/p' "$src")
warm=$(sed -n 's/.*n_warmup_steps *= *\([0-9]*\).*/\1/p' "$src")
sed -e "s/^epochs *= *[0-9]*/epochs = $((2 * epochs))/" \
    -e "s/n_warmup_steps *= *[0-9]*/n_warmup_steps = $((2 * ${warm:-0}))/" \
    -e "s/^name *= *\"\([^\"]*\)\"/name = \"\1-x2\"/" \
    -e "/^description/s/ $epochs epochs/ $((2 * epochs)) epochs/" "$src" > "$OUT/doubled.toml"
cp "$src" "$OUT/base.toml"
for which in base doubled; do
  ( start=$(date +%s)
    OMP_NUM_THREADS=1 $PY -m bench run --task "$TASK" --cells "$CELLS" --budget "$OUT/$which.toml" \
      --storage "sqlite:///$OUT/$which.db" --no-progress > "$OUT/$which.md" 2> "$OUT/$which.err"
    echo "$which: $(( $(date +%s) - start )) s" >> "$OUT/times.txt" ) &
done
wait
cat "$OUT/times.txt"
for which in base doubled; do echo "== $which ($(grep -m1 '^epochs' "$OUT/$which.toml"))"; sed -n '/^| cell/,$p' "$OUT/$which.md"; done

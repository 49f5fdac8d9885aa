#!/usr/bin/env bash
# The ablation study of issue 10, as measured for the README: every registered ablation of CELL
# against CELL, the gradient-flow diagnosis of lstm, CELL and CELL/no_momentum, and the mu x s
# grid, all on TASK at the default seeds. Runs niced (a test run beside it keeps its timings),
# stores everything in OUT (journal files: resumable, and `report` reads them), prints the
# tables into OUT/*.md and the wall time of each step into OUT/times.txt.
# Usage: scripts/ablation_study.sh [OUTDIR]   (default ./ablation; about 2 h on 2 CPU cores)
set -euo pipefail
OUT=${1:-ablation}
TASK=${TASK:-adding}
CELL=${CELL:-momentum_lstm}
WORKERS=${WORKERS:-2}
PY=${PY:-python}
mkdir -p "$OUT/plots"
step() {            # step NAME COMMAND...: run it, keep its table and its wall time
  local name=$1; shift
  local start; start=$(date +%s)
  nice -n 19 "$PY" -m bench "$@" > "$OUT/$name.md" 2> "$OUT/$name.err"
  echo "$name: $(( $(date +%s) - start )) s" >> "$OUT/times.txt"
}
step ablate ablate --cell "$CELL" --task "$TASK" --workers "$WORKERS" --no-progress \
  --storage "journal:$OUT/ablate.journal"
step diagnose diagnose --task "$TASK" --cells "lstm,$CELL,$CELL/no_momentum" \
  --storage "journal:$OUT/ablate.journal" --plots "$OUT/plots"
step sensitivity sensitivity --cell "$CELL" --task "$TASK" --budget default-fixed-lr \
  --grid mu=0,0.3,0.6,0.9 --grid s=0.1,0.3,0.6,1 --workers "$WORKERS" --no-progress \
  --storage "journal:$OUT/sensitivity.journal" --plots "$OUT/plots"
cat "$OUT/times.txt"

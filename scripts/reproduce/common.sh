# Shared by the reproduction scripts: run_preset PRESET TASK CELLS runs the preset's cells with
# `python -m bench run` in its own storage, exports the table as JSON and prints published vs
# measured (scripts/reproduce/compare.py), with the hardware and the wall time.
# Environment: PY (python), OUT (runs/reproduce), DEVICE (auto), DATA_DIR (for pmnist/timit),
# WORKERS (worker processes, where `run` has --workers).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PY:-python}
OUT=${OUT:-runs/reproduce}
DEVICE=${DEVICE:-auto}

hardware() {
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi --query-gpu=name --format=csv,noheader | head -1
  else echo "CPU: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"; fi
}

run_preset() {
  local preset=$1 task=$2 cells=$3
  local storage="sqlite:///$OUT/$preset.db" data=() work=()
  [ -n "${DATA_DIR:-}" ] && data=(--data-dir "$DATA_DIR")
  [ -n "${WORKERS:-}" ] && work=(--workers "$WORKERS")
  mkdir -p "$OUT"
  local start; start=$(date +%s)
  (cd "$ROOT" && $PY -m bench run --task "$task" --cells "$cells" --budget "$preset" \
      --storage "$storage" --device "$DEVICE" "${work[@]}" "${data[@]}" --no-progress)
  local wall=$(( $(date +%s) - start ))
  (cd "$ROOT" && $PY -m bench report --task "$task" --cells "$cells" --budget "$preset" \
      --storage "$storage" "${data[@]}" --format json --out "$OUT/$preset.json")
  (cd "$ROOT" && $PY scripts/reproduce/compare.py "$OUT/$preset.json" "$preset" \
      --wall-s "$wall" --hardware "$(hardware)")
}

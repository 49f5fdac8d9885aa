#!/usr/bin/env bash
# Everything this project measures on a GPU, in one run (3 to 6 minutes: the timed runs behind
# the README took about 3 on an H200 and 6 on an H100):
#   1. every cell on CUDA float32 equals the CPU float64 computation (tests/test_cuda.py);
#   2. `bench speed kernel` at issue 3's GPU setting: B 128, T 784, H 256, float32, vs cuDNN nn.LSTM,
#      with CUDA graphs (the default) and, for the graphed cells, without (BENCH_CUDA_GRAPHS=0);
#   3. one pMNIST epoch per cell (B 128, H 256) on synthetic IDX files of the real size,
#      lstm and momentum_lstm over a whole epoch (a check on the projection), the others projected from BATCHES batches.
# Usage: scripts/gpu_bench.sh [OUTDIR] ; logs and tables go to OUTDIR (default ./gpu-results).
set -uo pipefail
OUT_DIR=${1:-gpu-results}
BATCHES=${BATCHES:-10}
GRAPHED=janet,urlstm,nru,lmu,sr_lstm,dtriv,momentum_dtriv,adam_dtriv   # see bench/graphs.py
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT_DIR/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" | tee -a "$OUT_DIR/gpu.txt"

echo "== 1. CUDA float32 vs CPU float64, every cell"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT_DIR/cuda_tests.txt" | tail -15

echo "== 2. bench speed kernel, B 128, T 784, H 256"
$PY -m bench speed kernel --cells all --device cuda --batch 128 --seq 784 --hidden 256 --reps 5 \
    2>&1 | tee "$OUT_DIR/speed_cuda.txt"
BENCH_CUDA_GRAPHS=0 $PY -m bench speed kernel --cells "$GRAPHED" --device cuda --batch 128 --seq 784 \
    --hidden 256 --reps 5 2>&1 | tee "$OUT_DIR/speed_cuda_eager.txt"

echo "== 3. one pMNIST epoch per cell, B 128, H 256"
DATA=$(mktemp -d)/mnist
$PY -m bench data fake --task pmnist --data-dir "$DATA" 2>&1 | tail -2
$PY -m bench speed epoch --task pmnist --data-dir "$DATA" --device cuda --batch 128 --hidden 256 \
    --cells lstm,momentum_lstm \
    2>&1 | tee "$OUT_DIR/epoch_cuda_full.txt"
$PY -m bench speed epoch --task pmnist --data-dir "$DATA" --device cuda --batch 128 --hidden 256 \
    --cells all --batches "$BATCHES" 2>&1 | tee "$OUT_DIR/epoch_cuda_projected.txt"

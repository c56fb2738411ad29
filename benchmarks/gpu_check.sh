#!/usr/bin/env bash
# The GPU-only checks of issues 3 and 5 in one call of the device tool:
#   CUDA tests (corruption determinism, batch independence, CPU/CUDA tolerance; training and
#   evaluation on CUDA), the measured CPU/CUDA differences, corruption and training
#   throughput on CUDA, and one `--recipe fast` ResNet-20 run on the CIFAR-10 JPEG copy with
#   its clean + corruption evaluation.
# Before the call, here:  mkdir -p data/cifar10-jpeg && cp ../shared/data/cifar10-jpeg/*.tar.gz data/cifar10-jpeg/
# Device call:            run(command="bash benchmarks/gpu_check.sh", carry=["data"], timeout_s=600)
# Everything lands in $OUT/gpu-check.tgz plus $OUT/summary.txt (the device returns <= 8 files).
# STEPS=tests,tolerance,corruptions,train,fast (default: all) picks steps, to split the work
# over several calls if one would pass the device's 10-minute limit.
set -uo pipefail
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
W=$(mktemp -d)
PY=${PYTHON:-python3}
DATA=${CIFAR_JPEG:-data/cifar10-jpeg}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ACTBENCH_CACHE=$W/cache
STEPS=${STEPS:-tests,tolerance,corruptions,train,fast}
step() { echo "== $1" | tee -a "$OUT/summary.txt"; }
want() { [[ ",$STEPS," == *",$1,"* ]]; }

step "device"
{ nvidia-smi -L; $PY -c "import torch, torchvision, timm; print(torch.__version__, torchvision.__version__, timm.__version__)"; } 2>&1 | tee -a "$OUT/summary.txt"

if want tests; then
step "CUDA tests"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$W/cuda_tests.log" | tail -5 | tee -a "$OUT/summary.txt"

fi
if want tolerance; then
step "CPU/CUDA tolerance"
$PY benchmarks/cuda_tolerance.py --size 32 --n 512 > "$W/cuda_tolerance_32.txt" 2>&1
$PY benchmarks/cuda_tolerance.py --size 224 --n 16 > "$W/cuda_tolerance_224.txt" 2>&1
grep -A20 "^worst" "$W/cuda_tolerance_32.txt" "$W/cuda_tolerance_224.txt" | tee -a "$OUT/summary.txt"

fi
if want corruptions; then
step "corruption throughput (CUDA)"
$PY benchmarks/corruptions.py --device cuda --size 32 --n 4096 --no-ref --streams 1,3,4 > "$W/corruptions_cuda_32.txt" 2>&1
$PY benchmarks/corruptions.py --device cuda --size 224 --n 128 --no-ref --streams 1,3,4 > "$W/corruptions_cuda_224.txt" 2>&1
tail -25 "$W/corruptions_cuda_32.txt" | tee -a "$OUT/summary.txt"

fi
if want train; then
step "training throughput (CUDA, ResNet-20, batch 512, bf16, channels_last)"
$PY benchmarks/train.py --device cuda --batch-size 512 --amp bf16 --channels-last > "$W/train_cuda.txt" 2>&1
tail -12 "$W/train_cuda.txt" | tee -a "$OUT/summary.txt"
step "eager vs torch.compile (CUDA, ResNet-20, batch 512, bf16, channels_last)"
$PY benchmarks/train.py --device cuda --batch-size 512 --amp bf16 --channels-last --compile \
  --activations relu,la_silu > "$W/train_cuda_compile.txt" 2>&1
tail -6 "$W/train_cuda_compile.txt" | tee -a "$OUT/summary.txt"

fi
if want fast && [ -f "$DATA/train.tar.gz" ]; then
  step "fast recipe, ResNet-20, CIFAR-10 JPEG copy"
  mkdir -p "$W/c10" && tar xzf "$DATA/train.tar.gz" -C "$W/c10" && tar xzf "$DATA/test.tar.gz" -C "$W/c10"
  # FAST_EPOCHS: the recipe's 35 epochs gave 87.2 % here on CPU (target 89 %); longer runs
  # show how much schedule the recipe needs (split them over calls, e.g. FAST_EPOCHS=100,
  # if one call would pass the 10-minute limit).
  for ep in ${FAST_EPOCHS:-35 70 100}; do
    run="$W/fast-resnet20-relu-s0-e$ep"
    step "fast recipe, $ep epochs"
    /usr/bin/time -f "wall %e s" $PY -m robustbench_act train --model resnet20 --recipe fast \
      --epochs "$ep" --dataset "imagefolder:$W/c10" --seed 0 --out "$run" 2>&1 | tail -4 | tee -a "$OUT/summary.txt"
    rm -f "$run/state.pt"
    $PY -m robustbench_act run --checkpoint "$run" --dataset "imagefolder:$W/c10" \
      --corruptions none --probes none --out "$run-clean" --quiet 2>&1 | tail -3 | tee -a "$OUT/summary.txt"
    tail -2 "$run-clean/summary.csv" | tee -a "$OUT/summary.txt"
  done
elif want fast; then
  step "no $DATA/train.tar.gz: fast-recipe run skipped"
fi

rm -rf "$W/c10" "$W/cache"
tar czf "$OUT/gpu-check.tgz" -C "$W" .

#!/usr/bin/env bash
# On the GPU machine, from the repository root: install the carried wheels beside its torch and
# transformers, then run the proof; results land in benchmarks/results/ and in $OUT (or ./gpu-out).
set -euo pipefail
out="${OUT:-gpu-out}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site benchmarks/gpu/wheels/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -m benchmarks.gpu.proof --out "$out" "$@" 2>&1 | tee "$out.log"
mv "$out.log" "$out/" 2>/dev/null || true

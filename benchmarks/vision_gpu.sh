#!/usr/bin/env bash
# ResNet-50 training on a GPU, Garden vs KerasHub vs Model Garden (benchmarks/vision.py), in float32,
# mixed_bfloat16 and mixed_float16, each without and with XLA: images/s, MFU against the matmul peak of
# the compute dtype, and the ratio to the fastest peer, one JSON line per system and setting, appended
# to $OUT/vision_gpu.jsonl (or ./vision_gpu.jsonl). Batch 256 by default (BATCH=...); PRECISIONS picks
# a subset ("bfloat16 float16") to fit a short device lease.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/vision_gpu.jsonl"
for precision in ${PRECISIONS:-float32 bfloat16 float16}; do
  for xla in "" --xla; do
    python benchmarks/vision.py --batch "${BATCH:-256}" --steps 30 --loop 10 --precision "$precision" $xla \
      | grep '^{' | tee -a "$out"
  done
done

#!/usr/bin/env bash
# The accelerator checks in one run, for a GPU/TPU host: pre-training step speed (default
# and paper-scale configs), dense encoding of a patch, recurrence plots. Prints markdown
# and keeps a copy in $OUT/accelerator.md (default /tmp/accelerator).
#
#   bench/accelerator.sh          # on the accelerator (about 5 minutes on one H100)
#   bench/accelerator.sh --cpu    # the same commands at tiny sizes, on CPU (tested)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-/tmp/accelerator}
mkdir -p "$OUT"
SYNTHETIC=(--set 'data.name="synthetic"')
if [[ "${1:-}" == "--cpu" ]]; then
  STEP=(--devices=1 --repeats=1 --set global_batch_size=16 --set data.num_patches=4)
  PAPER=(--set global_batch_size=16 --set data.num_patches=4)
  DENSE=(--parts=speed --layouts=default --size=16 --repeats=1 --train-steps=0)
  PLOTS=(--n 64 --t 12 --repeats 1)
else
  STEP=(--devices=1 --repeats=10)
  PAPER=(--set global_batch_size=1024)
  DENSE=(--parts=speed,memory --layouts=default,resnet18 --size=128 --repeats=3 --raster=1024)
  PLOTS=(--n 65536 --t 61 --repeats 5)
fi
{
  echo "## Device"
  "$PY" -c "import jax; print(jax.__version__, jax.devices())"
  echo
  echo "## Pre-training step, configs/pretrain.py"
  "$PY" bench/train_step.py --config=configs/pretrain.py "${STEP[@]}"
  echo
  echo "## Pre-training step, configs/pretrain_pastis.py (paper scale, synthetic patches)"
  "$PY" bench/train_step.py --config=configs/pretrain_pastis.py --devices=1 --repeats=3 \
    "${SYNTHETIC[@]}" "${PAPER[@]}"
  echo
  echo "## Dense encoding"
  "$PY" bench/dense_encode.py "${DENSE[@]}"
  echo
  echo "## Recurrence plots"
  "$PY" bench/recurrence.py "${PLOTS[@]}"
} 2>&1 | tee "$OUT/accelerator.md"

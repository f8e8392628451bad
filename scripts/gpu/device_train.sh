#!/usr/bin/env bash
# Train All-CNN-C on the lent GPU machine: Keras 3 on JAX, no TensorFlow there.
#
# Here, once (see scripts/gpu/README.md):   bash scripts/gpu/prepare.sh
# Then through the device tool, from the repository root, carrying .whl and .gpu_data:
#   bash scripts/gpu/device_train.sh --recipe fast --budget 7m30s --workers 8
# Every argument is passed to `toolkit train`. The run's small artifacts are copied to
# $OUT (the device tool brings back at most 8 files) or to ./runs/gpu when OUT is unset.
set -euo pipefail
cd "$(dirname "$0")/../.."

# The wheels are for the GPU machine's Python 3.12; skip them where Keras is already installed.
if ! python3 -c "import importlib.util as u, sys; sys.exit(u.find_spec('keras') is None)" && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
export PYTHONUNBUFFERED=1

data=/tmp/cifar10-jpeg/train
[ -d "$data" ] || python3 scripts/gpu/pack_images.py unpack .gpu_data/cifar10-train.npz "$data"

destination="${OUT:-runs/gpu}"
run_folder=/tmp/gpu_run
rm -rf "$run_folder"
mkdir -p "$destination"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$destination/device.txt" || true
start=$(date +%s)
python3 -m toolkit train --data "$data" --out "$run_folder" --no-progress "$@" 2>&1 | tee "$destination/train.log"
echo "wall_seconds=$(( $(date +%s) - start ))" | tee -a "$destination/train.log"
for name in best.keras best.card.json config.json metrics.json history.csv curves.png; do
  if [ -f "$run_folder/$name" ]; then cp "$run_folder/$name" "$destination/"; fi
done

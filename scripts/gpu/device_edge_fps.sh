#!/usr/bin/env bash
# The edge FPS benchmark (benchmarks/edge_fps.py) on the lent GPU machine's CPU cores.
#
# Here, once:  bash scripts/gpu/prepare_edge_fps.sh
# Then through the device tool, from the repository root, carrying .whl_edge and .gpu_edge:
#   bash scripts/gpu/device_edge_fps.sh
# Arguments go to benchmarks/edge_fps.py (e.g. --repeats 3). edge_fps.json and edge_fps.md
# land in $OUT (or runs/edge_fps_device when OUT is unset).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! python3 -c "import ai_edge_litert" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_edge .whl_edge/*.whl
  export PYTHONPATH="/tmp/site_edge:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
destination="${OUT:-runs/edge_fps_device}"
mkdir -p "$destination"
nproc | sed 's/^/cores: /' | tee "$destination/cores.txt"
python3 benchmarks/edge_fps.py --model .gpu_edge/model_int8.tflite --out "$destination" \
  --note "Run on the lent GPU machine's CPU (see cores.txt); the GPU is not used." "$@"

#!/usr/bin/env bash
# Here (the workstation, with TensorFlow and the package index): what the edge FPS benchmark
# needs on the lent GPU machine, whose 16 CPU cores leave cores free for capture at 1 and 2
# interpreter threads. It has numpy and OpenCV but no LiteRT and no TensorFlow, so this fetches
# the ai-edge-litert wheel (and backports.strenum, its one dependency missing there) for
# Python 3.12 into .whl_edge/ and builds the benchmark's model into .gpu_edge/. Both are git-ignored.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info
for folder in /.whl_edge/ /.gpu_edge/; do
  grep -qxF "$folder" .git/info/exclude 2>/dev/null || echo "$folder" >> .git/info/exclude
done
version="$(python3 -c 'from importlib.metadata import version; print(version("ai-edge-litert"))')"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl_edge "ai-edge-litert==$version"
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl_edge "backports.strenum==1.2.8" \
  || python3 -m pip download -q --no-deps -d .whl_edge backports.strenum
mkdir -p .gpu_edge
TF_CPP_MIN_LOG_LEVEL=2 python3 benchmarks/edge_fps.py --build-only .gpu_edge/model_int8.tflite >/dev/null
du -sh .whl_edge .gpu_edge

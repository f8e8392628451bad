#!/usr/bin/env bash
# Here (the workstation, with internet to the package index): fetch the wheels the GPU
# machine lacks (Keras 3 and two of its dependencies; JAX, numpy, OpenCV, h5py, rich,
# matplotlib, tqdm are already there) and pack the shared CIFAR-10 JPEGs into one file.
# Both folders are git-ignored and travel with the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.gpu_data/\n' >> .git/info/exclude
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0
python3 scripts/gpu/pack_images.py pack "${1:-../shared/data/cifar10-jpeg/train}" .gpu_data/cifar10-train.npz
du -sh .whl .gpu_data

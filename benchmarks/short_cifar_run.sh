#!/usr/bin/env bash
# A short real training run on the shared CIFAR-10 JPEGs, sized for a shared 2-core CPU
# (about 20 minutes on one thread): All-CNN-C at quarter width with batch normalisation,
# all 50,000 images (45,000 train / 5,000 validation), 8 epochs.
# On a GPU drop --width/--limit and raise --epochs (e.g. 350 with --schedule paper).
#
# Writes the run folder to runs/short_cifar_run (git-ignored) and copies
# metrics.json, history.csv, curves.png and the best model's card next to it (committed).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/cifar10-jpeg/train}"
OUT=benchmarks/results/short_run
THREADS="${THREADS:-1}"
RUN=runs/short_cifar_run
rm -rf "$RUN"
export OMP_NUM_THREADS="$THREADS" TF_NUM_INTRAOP_THREADS="$THREADS" TF_NUM_INTEROP_THREADS="$THREADS"
nice -n 10 toolkit train --data "$DATA" --out "$RUN" \
    --width 0.25 --batch-norm --epochs 8 --batch-size 128 --no-progress "$@"
cp "$RUN/metrics.json" "$RUN/history.csv" "$RUN/curves.png" "$OUT/"
cp "$RUN/best.card.json" "$OUT/best.card.json"
python - "$OUT/metrics.json" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
print(f"best validation accuracy {metrics['best_validation_accuracy']:.4f} at epoch {metrics['best_epoch']}, "
      f"{metrics['training_seconds']:.0f} s of training, {metrics['images_per_second']} images/s")
PY

#!/usr/bin/env bash
# The reference benchmark table: every format of the reference configuration side by side.
#
#   1. toolkit pipeline on 2000 shared CIFAR-10 images, 1 epoch per stage (train -> 50 % prune ->
#      QAT -> convert): the Keras float model and the int8 pruned + QAT model;
#   2. the same trained model through QAT alone (--no-prune): the int8 QAT model;
#   3. toolkit benchmark on both; it converts float32, float16, dynamic range and int8
#      post-training from the float model itself.
#
# Writes benchmarks/results/benchmark_reference.{json,md}. Stages already up to date are
# skipped, so a rerun only re-measures. Environment: DATA, OUT, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${DATA:-../shared/data/cifar10-jpeg/train}"
OUT="${OUT:-runs/bench-reference}"
THREADS="${THREADS:-1,2,4}"

toolkit pipeline --data "$DATA" --limit 2000 --epochs-per-stage 1 --out "$OUT/pipeline" --no-progress
toolkit pipeline --model "$OUT/pipeline/train/best.keras" --no-prune --data "$DATA" --limit 2000 \
    --epochs-per-stage 1 --out "$OUT/qat-only" --no-progress
toolkit benchmark --model "$OUT/pipeline" --model "$OUT/qat-only" --threads "$THREADS" --limit 1000 --out "$OUT/benchmark"

python3 - "$OUT/benchmark" benchmarks/results <<'EOF'
import json, shutil, sys
from pathlib import Path

from toolkit.benchmark.report import format_notes, format_table

source, target = Path(sys.argv[1]), Path(sys.argv[2])
report = json.loads((source / "benchmark.json").read_text())
machine = report["machine"]
target.mkdir(parents=True, exist_ok=True)
shutil.copyfile(source / "benchmark.json", target / "benchmark_reference.json")
preamble = f"""# Reference benchmark: every format side by side

Configuration (`benchmarks/benchmark_reference.sh`): `toolkit pipeline` on 2000 shared CIFAR-10 images
with 1 epoch per stage (full-width All-CNN-C, 50 % pruning, QAT, int8), the same float model through
QAT alone for the int8 QAT row, then `toolkit benchmark --threads 1,2,4 --limit 1000`.

Machine: a {machine['cpu_count']}-core x86-64 CPU ({machine['processor']}), no GPU, shared with other jobs
while it ran (1-minute load average {machine.get('load_average_1min_at_start')} at the start,
{machine.get('load_average_1min')} at the end), so latencies are upper bounds and 4 threads on 2 cores
only shows the cost of oversubscription. Not a Raspberry Pi or Coral figure.

One epoch on 1800 images leaves every model at chance level (10 % top-1, one class for every image),
so the Top-1 and Agree columns say nothing about quantisation quality here; the size, gzip, latency and
memory columns are the point of this table.

"""
(target / "benchmark_reference.md").write_text(preamble + format_table(report) + "\n\n" + format_notes(report) + "\n")
print(f"wrote {target / 'benchmark_reference.json'} and {target / 'benchmark_reference.md'}")
EOF

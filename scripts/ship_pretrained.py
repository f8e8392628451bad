"""Ship a finished `toolkit pipeline` run as the default model in pretrained/.

    toolkit pipeline --config pretrained/reference.yaml && python scripts/ship_pretrained.py runs/reference
    toolkit pipeline --config pretrained/reference.yaml --model runs/gpu/best.keras --out runs/reference-gpu
    python scripts/ship_pretrained.py runs/reference-gpu

Converts the pruned float model with plain post-training int8 as well (RUN/convert-ptq),
keeps whichever int8 model scores higher on the validation split (QAT or PTQ), and copies
it with its card and parity.json into pretrained/, with the float model exported for
distribution (plain Keras 3, no optimizer state), the training history and curves (of the
run folder that trained the pipeline's model, as pipeline.json names it), and figures.json:
every stage's wall time and validation figures, which pretrained/README.md quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from converters.bridge import export_for_distribution  # noqa: E402
from converters.convert import PARITY_NAME, REPORT_NAME, ConvertConfig, convert, finished_report, tflite_name  # noqa: E402
from toolkit import atomic  # noqa: E402
from toolkit.model_card import card_path  # noqa: E402
from toolkit.pipeline import MANIFEST_NAME, trained_model  # noqa: E402


def read_json(path: Path) -> dict[str, Any]:
    """A JSON file of the run; a missing one means the pipeline has not finished."""
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: finish `toolkit pipeline` first")
    return json.loads(path.read_text())


def convert_post_training(run: Path) -> Path:
    """Plain post-training int8 of the pruned model, with the pipeline's own convert settings (converted once while
    that model is unchanged); returns its folder."""
    out = run / "convert-ptq"
    settings = read_json(run / "convert" / REPORT_NAME)["config"]
    settings.update(model=str(run / "prune" / "model.keras"), out=str(out), formats=("int8",), overwrite=True, edgetpu=False)
    config = ConvertConfig(**settings)
    if finished_report(config) is None:
        convert(config)
    return out


def figures(run: Path, training: Path, folders: dict[str, Path], conversions: dict[str, dict[str, Any]], chosen: str) -> dict[str, Any]:
    """Wall time and validation top-1 of every stage, for pretrained/README.md."""
    train = read_json(training / "metrics.json")
    return {
        "run": str(run.resolve()),
        "training_run": str(training.resolve()),
        "train": {key: train.get(key) for key in ("budget_seconds", "seconds_spent", "epochs_completed", "best_epoch",
                                                   "best_validation_accuracy", "images_per_second", "train_images", "validation_images")},  # fmt: skip
        **{stage: {"seconds": report["seconds"], "validation_accuracy": report["validation_accuracy"], "sparsity": report["sparsity"]}
           for stage, report in ((stage, read_json(run / stage / "report.json")) for stage in ("prune", "qat"))},  # fmt: skip
        "convert_seconds": {name: read_json(folder / REPORT_NAME)["seconds"] for name, folder in folders.items()},
        "int8": {name: {key: parity[key] for key in ("float_top1", "int8_top1", "gap_points", "agreement", "images")}
                 for name, parity in conversions.items()},  # fmt: skip
        "shipped": chosen,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", default=REPO_ROOT / "runs" / "reference", help="the pipeline's --out folder")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "pretrained", help="where the shipped files go")
    args = parser.parse_args()
    run, out = args.run, args.out
    trained = trained_model(run, read_json(run / MANIFEST_NAME))
    training = trained.parent
    folders = {"qat": run / "convert", "ptq": convert_post_training(run)}
    conversions = {name: read_json(folder / PARITY_NAME) for name, folder in folders.items()}
    chosen = max(conversions, key=lambda name: conversions[name]["int8_top1"])
    model = folders[chosen] / tflite_name("int8")
    for source in (model, card_path(model), folders[chosen] / PARITY_NAME, training / "history.csv", training / "curves.png"):
        atomic.write_bytes(out / source.name, source.read_bytes())  # its atomic_path creates ``out``
    export_for_distribution(trained, out / "model.keras")
    atomic.write_json(out / "figures.json", figures(run, training, folders, conversions, chosen))
    for name, parity in conversions.items():
        print(f"{name}: int8 top-1 {parity['int8_top1']:.4f} (float {parity['float_top1']:.4f}, agreement {parity['agreement']:.4f})")
    print(f"shipped the {chosen} int8 model to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

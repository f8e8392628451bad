"""What fine-tuning from the shipped reference model buys on a small dataset of your own.

    python benchmarks/own_data.py       # 4 seeds x 2 arms x 5 minutes, about 45 minutes: writes benchmarks/own_data.md
    python benchmarks/own_data.py --budget 10m --parent runs/c30/best.keras

The dataset is Fashion-MNIST cut to 100 training images per class (a seeded, class-balanced
``--limit``, of which the toolkit's 10 % validation split is carved). For every seed of
``--seeds`` (each draws its own subset, split and initialisation), two arms run one after the
other with the same data, split, seed and wall-clock ``--budget``, both with the ``fast``
recipe and the parent's architecture: "from scratch", and "fine-tuned" (started from
``--parent``, by default ``pretrained``, the shipped reference model). Each arm's best.keras
is scored on the Fashion-MNIST test split with ``training.evaluate``; the verdict is on the
mean over seeds. The first seed's fine-tuned model is then converted to int8
(``converters.convert``) and its .tflite scored the same way.

Run folders go to ``--out-dir/seed<N>/<arm>`` (finished arms are read back, stopped ones resumed); the conversion and
the test evaluations are reused while their model is unchanged. The JSON and the markdown are rewritten after every step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from converters.convert import ConvertConfig, convert, finished_report  # noqa: E402
from benchmarks.sitting import arm_sitting, cell, generated_line, percent, run_script, train_unless_finished, write_results  # noqa: E402
from toolkit import atomic  # noqa: E402
from toolkit.errors import ToolkitError  # noqa: E402
from toolkit.model_card import load_card  # noqa: E402
from training.allcnn import ModelConfig  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.datasets import FASHION_MNIST_LABELS  # noqa: E402
from training.evaluate import evaluate, load_evaluation_data  # noqa: E402
from training.run_folder import RunFolder  # noqa: E402
from training.train_config import TrainConfig  # noqa: E402
from training.transfer import parent_architecture  # noqa: E402

SEED = 0  # of the test subset (--test-limit) and of the class check
DEFAULT_SEEDS = "0,1,2,3"
# 111 per class: the 10 % validation split takes round(11.1) = 11 of each class, 100 are left to train on.
DEFAULT_LIMIT = 1110
TARGET_POINTS = 5.0  # fine-tuned test top-1 at least this many points above from scratch
INT8_FOLDER = "fine-tuned-int8"
EVALUATION_SUFFIX = ".test_evaluation.json"  # beside each scored model: its test top-1, keyed by the model's hash
TEST_COLUMNS = ("images", "top1", "top5")  # of a test evaluation, in each row as test_<name>
ARMS = {"from scratch": False, "fine-tuned": True}  # arm -> starts from --parent's weights; run folder: its name, spaces as dashes


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default="fashion-mnist", help="fashion-mnist, or a folder of Fashion-MNIST IDX files")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="seeded, class-balanced subset, validation split included")
    parser.add_argument("--budget", default="5m", help="wall-clock budget of every arm, e.g. 300, 5m or 1h")
    parser.add_argument("--seeds", type=_seeds, default=_seeds(DEFAULT_SEEDS), help="training seeds, comma-separated; the verdict is on their mean")
    parser.add_argument("--parent", default="pretrained", help="the .keras model the fine-tuned arm starts from")
    parser.add_argument("--test-limit", type=int, default=None, help="score on a seeded, class-balanced subset of the test split")
    parser.add_argument("--out-dir", default=str(Path.home() / "runs" / "own-data"), help="run folders, one per arm, and the int8 model")
    parser.add_argument("--results", default=str(REPO_ROOT / "benchmarks" / "results" / "own_data"), help="results JSON path without .json")
    parser.add_argument("--markdown", default=str(REPO_ROOT / "benchmarks" / "own_data.md"), help="the markdown report")
    return parser.parse_args(argv)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is given twice in {text!r}")
    return seeds


def check_fashion_mnist(data: str, limit: int) -> None:
    """Refuse data that is not Fashion-MNIST, before any arm trains."""
    classes = load_dataset(data, limit=limit, seed=SEED).class_names
    if list(classes) != FASHION_MNIST_LABELS:
        raise ToolkitError(f"--data {data} has classes {', '.join(classes[:5])}...; this benchmark needs Fashion-MNIST's ten")


def seed_folder(args: argparse.Namespace, seed: int) -> Path:
    """The folder of one seed's arms and int8 model."""
    return Path(args.out_dir).expanduser() / f"seed{seed}"


def arm_config(arm: str, args: argparse.Namespace, parent: ModelConfig, seed: int) -> TrainConfig:
    """The TrainConfig of one arm; "from scratch" builds the parent's architecture so only the start differs."""
    return TrainConfig(
        data=args.data,
        out=str(seed_folder(args, seed) / arm.replace(" ", "-")),
        recipe="fast",
        budget=args.budget,
        limit=args.limit,
        seed=seed,
        architecture=parent.name,
        width=parent.width,
        batch_norm=parent.batch_norm,
        from_model=args.parent if ARMS[arm] else None,
        progress=False,
    )


def score_on_test_split(model_path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Top-1 of a .keras or .tflite model on the test split (which ``training.evaluate`` resizes to the card's input
    size), read back while the model and test set are unchanged."""
    saved_path = model_path.with_name(model_path.stem + EVALUATION_SUFFIX)
    key = {"model_sha256": atomic.file_digest(model_path), "data": f"{args.data}:test", "limit": args.test_limit}
    saved = atomic.read_json_object(saved_path)
    if {name: saved.get(name) for name in key} == key:
        return saved
    card = load_card(model_path)
    dataset = load_evaluation_data(key["data"], card, split="all", limit=args.test_limit, seed=SEED, progress=False)
    report = evaluate(model_path, dataset, progress=False)
    result = {**key, "images": report["n"], "top1": report["top1"], "top5": report["top5"], "input_size": list(card.input_size)}
    atomic.write_json(saved_path, result)
    return result


def arm_result(arm: str, seed: int, run: RunFolder, args: argparse.Namespace) -> dict[str, Any]:
    """One arm's row: its run folder's metrics.json and its best.keras on the test split."""
    metrics = run.read_metrics()
    evaluation = score_on_test_split(run.best, args)
    keys = ("train_images", "validation_images", "epochs_completed", "seconds_spent", "budget_seconds",
            "images_per_second", "best_validation_accuracy", "batch_size", "parameters")  # fmt: skip
    return {
        "arm": arm,
        "seed": seed,
        "run": str(run.root),
        "model": str(run.best),
        "finished_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime(run.metrics.stat().st_mtime)),  # UTC; an arm read back is older than the sitting
        "input_size": evaluation["input_size"],
        **{key: metrics.get(key) for key in keys},
        **{f"test_{key}": evaluation[key] for key in TEST_COLUMNS},
    }


def int8_result(fine_tuned: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The int8 row of the fine-tuned best.keras (converted once while it is unchanged): validation top-1 (convert's parity) and test top-1."""
    out = seed_folder(args, fine_tuned["seed"]) / INT8_FOLDER
    config = ConvertConfig(model=fine_tuned["model"], formats=("int8",), out=str(out), progress=False, overwrite=True)
    report = finished_report(config)
    if report is None:
        print("converting the fine-tuned model to int8", file=sys.stderr, flush=True)
        report = convert(config).report
    model = Path(report["formats"]["int8"]["model"])
    parity = json.loads(Path(report["parity"]).read_text())
    evaluation = score_on_test_split(model, args)
    return {
        "arm": "fine-tuned, int8",
        "seed": fine_tuned["seed"],
        "model": str(model),
        "size_bytes": report["formats"]["int8"]["sizes"]["raw"],
        "calibration_images": report["calibration"]["images"],
        "validation_images": parity["images"],
        "held_out": parity.get("held_out", {}),
        "validation_top1": parity["int8_top1"],
        "float_validation_top1": parity["float_top1"],
        "conversion_seconds": report["seconds"],
        **{f"test_{key}": evaluation[key] for key in TEST_COLUMNS},
    }


def target_verdict(arms: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether the fine-tuned arms' test top-1 is, on average over seeds, at least TARGET_POINTS above from scratch."""
    by_seed: dict[int, dict[str, float]] = {}
    for row in arms:
        by_seed.setdefault(row["seed"], {})[row["arm"]] = row["test_top1"]
    per_seed = {seed: 100 * (top1["fine-tuned"] - top1["from scratch"]) for seed, top1 in by_seed.items()}
    difference = sum(per_seed.values()) / len(per_seed)
    return {"points": TARGET_POINTS, "difference_points": round(difference, 2), "met": difference >= TARGET_POINTS,
            "per_seed": {str(seed): round(points, 2) for seed, points in per_seed.items()}}  # fmt: skip


def markdown(results: dict[str, Any]) -> str:
    """The report: how it was run, the table, the target verdict."""
    lines = [
        "# Fine-tuning from the reference model on a small dataset of your own",
        "",
        generated_line(results),
        "",
        *settings_lines(results),
        "",
        "| seed | arm | trained (UTC) | training images | epochs done | seconds | validation top-1 | test top-1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["arms"]:
        lines.append(
            f"| {row['seed']} | {row['arm']} | {cell(row.get('finished_at'))} | {cell(row['train_images'])} | {cell(row['epochs_completed'])} | {cell(row['seconds_spent'])} | "
            f"{percent(row['best_validation_accuracy'])} | {percent(row['test_top1'])} |"
        )
    int8 = results.get("int8")
    if int8:
        lines.append(f"| {int8['seed']} | {int8['arm']} | - | - | - | - | {percent(int8['validation_top1'])} | {percent(int8['test_top1'])} |")
        lines += [
            "",
            f"int8: `converters.convert` of the first seed's fine-tuned best.keras ({int8['size_bytes']:,} bytes, {int8['calibration_images']} "
            f"calibration images from the training split, {int8['conversion_seconds']:g} s). Its validation top-1 is convert's "
            f"parity on {int8['validation_images']} held-out images ({_held_out(int8['held_out'])}; the float model there: "
            f"{percent(int8['float_validation_top1'])}); convert resizes them to the model's input size as training did.",
        ]
    target = results.get("target")
    if target:
        verdict = "met" if target["met"] else "NOT met"
        per_seed = ", ".join(f"seed {seed}: {points:+.1f}" for seed, points in target["per_seed"].items())
        lines += ["", f"Target: fine-tuned >= from scratch + {target['points']:g} points of test top-1, on average over the seeds: "
                      f"**{verdict}** ({target['difference_points']:+.1f} points; {per_seed})."]  # fmt: skip
    return "\n".join(lines).rstrip("\n") + "\n"


def settings_lines(results: dict[str, Any]) -> list[str]:
    """The data, split, arms and test set, one bullet each."""
    row = results["arms"][0]
    classes = len(FASHION_MNIST_LABELS)
    architecture = results["architecture"]
    test_subset = f", a seeded class-balanced {results['test_limit']} of them" if results["test_limit"] else ""
    limit_rule = (" `--limit` counts images before the split, so 111 per class (round(11.1) = 11 to validation) is how the "
                  "toolkit asks for 100 training images per class.") if results["limit"] == DEFAULT_LIMIT else ""
    return [
        f"- Data: `{results['data']}`, `--limit {results['limit']}`, a seeded, class-balanced "
        f"{results['limit'] / classes:g} images per class; each seed ({', '.join(map(str, results['seeds']))}) draws its own subset, "
        "split and initialisation. The toolkit's stratified 10 % validation split takes "
        f"{row['validation_images'] / classes:g} of each class, leaving {row['train_images'] / classes:g} training images "
        f"per class ({row['train_images']} training, {row['validation_images']} validation).{limit_rule}",
        f"- Both arms of a seed: the `fast` recipe, `--budget {results['budget']}` ({results['budget_seconds']:g} s of training and "
        f"validation each), one after the other, the parent's architecture ({architecture['name']}, width "
        f"{architecture['width']:g}, batch norm {'on' if architecture['batch_norm'] else 'off'}). Arms already finished in "
        "`--out-dir` are read back, not rerun: \"trained\" says when each arm ended, and the machine above is this sitting's.",
        f"- fine-tuned: starts from `{results['parent']}` ({results['parent_path']}, sha256 {results['parent_sha256'][:12]}); "
        "the images are resized to the parent's input size; the learning rate is the recipe's, as from scratch. "
        "from scratch: Fashion-MNIST's own 28x28.",
        f"- Test top-1: best.keras of each arm (the latest epoch within one standard error of the best validation top-1) on `{results['test_data']}`{test_subset}, through `training.evaluate`, "
        "which resizes the images to the model card's input size.",
    ]


def _held_out(origin: dict[str, int]) -> str:
    """Where convert's parity images came from, in words."""
    if not origin.get("outside_training_subset"):
        return "the validation split"
    return f"the {origin['validation_split']} of the validation split and {origin['outside_training_subset']} images outside the --limit subset, never trained on"


def main(argv: list[str]) -> int:
    """Train (or read back) both arms, score them on the test split, convert and score the int8 model."""
    args = parse_arguments(argv)
    parent_path, _, parent = parent_architecture(args.parent)
    check_fashion_mnist(args.data, args.limit)
    results: dict[str, Any] = arm_sitting(
        "own_data.py",
        argv,
        args,
        test_data=f"{args.data}:test",
        test_limit=args.test_limit,
        parent=args.parent,
        parent_path=str(parent_path),
        parent_sha256=atomic.file_digest(parent_path),
        architecture=parent.to_dict(),
        seeds=args.seeds,
        arms=[],
    )
    for seed in args.seeds:
        for arm in ARMS:
            config = arm_config(arm, args, parent, seed)
            run = train_unless_finished(config, f"arm {arm}: training for {config.budget}")
            results["arms"].append(arm_result(arm, seed, run, args))
            write_results(results, markdown(results), args.results, args.markdown)
    results["int8"] = int8_result(next(row for row in results["arms"] if row["arm"] == "fine-tuned"), args)
    results["target"] = target_verdict(results["arms"])
    write_results(results, markdown(results), args.results, args.markdown)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    run_script(main)

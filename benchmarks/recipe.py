"""Same-budget A/B of the short-budget recipe: "fast" against the old default and against itself with one change undone.

    python benchmarks/recipe.py                          # every arm, 10 minutes each: writes benchmarks/recipe.md
    python benchmarks/recipe.py --arms fast,old-default --budget 20m

Every arm is one ``training.train.train`` run with the same data, seed, split, width and
wall-clock ``--budget``, run one after the other on this machine. "old-default" is the
"paper" recipe, "fast" the final recipe, and each other arm is "fast" with one of its
changes removed (or, for "ema", one change added). An arm that diverges (train exits
with code 3) is recorded as diverged.

Run folders go to ``--out-dir/<arm>`` (finished arms are read back, stopped ones resumed); the JSON and the markdown
table are rewritten after every arm.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.sitting import DIVERGED_FILE, cell, generated_line, percent, run_script, train_unless_finished  # noqa: E402
from benchmarks.sitting import DEFAULT_DATA, arm_sitting, write_results  # noqa: E402
from toolkit import atomic  # noqa: E402
from toolkit.errors import ToolkitError  # noqa: E402
from training.run_folder import RunFolder  # noqa: E402
from training.train_config import RECIPES, TrainConfig  # noqa: E402

DIVERGED_EXIT_CODE = 3  # train()'s exit code for a run that diverged
SEED = 0


@dataclasses.dataclass(frozen=True)
class Arm:
    """One training run of the table: a recipe and the fields set on top of it."""

    name: str
    recipe: str = "fast"
    overrides: tuple[tuple[str, Any], ...] = ()


ARMS = (
    Arm("old-default", recipe="paper"),
    Arm("fast"),
    Arm("float32", overrides=(("precision", "float32"),)),
    Arm("batch-128", overrides=(("batch_size", 128), ("learning_rate", 0.1))),
    Arm("no-label-smoothing", overrides=(("label_smoothing", 0.0),)),
    Arm("no-cutout", overrides=(("augmentation", "paper"),)),
    Arm("dropout", overrides=(("input_dropout", 0.2), ("stage_dropout", 0.5))),
    Arm("no-nesterov", overrides=(("nesterov", False),)),
    Arm("ema", overrides=(("ema", 0.99),)),
    Arm("no-batch-norm", overrides=(("batch_norm", False),)),
)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line of this script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="image folder (or any toolkit train --data)")
    parser.add_argument("--limit", type=int, default=10000, help="seeded, class-balanced subset of this many images")
    parser.add_argument("--budget", default="10m", help="wall-clock budget of every arm, e.g. 600, 10m or 1h")
    parser.add_argument("--width", type=float, default=1.0, help="All-CNN-C filter-count multiplier")
    parser.add_argument("--arms", default=",".join(arm.name for arm in ARMS), help="comma-separated arms to run, in this order")
    parser.add_argument("--out-dir", default=str(Path.home() / "runs" / "recipe-ab"), help="run folders, one per arm")
    parser.add_argument("--results", default=str(REPO_ROOT / "benchmarks" / "results" / "recipe"), help="results JSON path without .json")
    parser.add_argument("--markdown", default=str(REPO_ROOT / "benchmarks" / "recipe.md"), help="the markdown table")
    return parser.parse_args(argv)


def select_arms(names: str) -> list[Arm]:
    """The arms named in a comma-separated list, in its order."""
    by_name = {arm.name: arm for arm in ARMS}
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in by_name]
    if unknown or not chosen:
        raise ToolkitError(f"--arms takes a comma-separated list of {', '.join(by_name)}; got {names!r}")
    return [by_name[name] for name in chosen]


def arm_config(arm: Arm, args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of one arm: the shared data, split, seed, width and budget, then the arm's own fields."""
    return TrainConfig(
        data=args.data,
        out=str(Path(args.out_dir).expanduser() / arm.name),
        recipe=arm.recipe,
        budget=args.budget,
        limit=args.limit,
        seed=SEED,
        width=args.width,
        progress=False,
        **dict(arm.overrides),
    )


def describe(arm: Arm) -> str:
    """What the arm changes, relative to the fast recipe."""
    fast = TrainConfig(recipe="fast").resolved()
    if arm.recipe != "fast":
        changed = {key: value for key, value in RECIPES[arm.recipe].items() if value != getattr(fast, key)}
        return f"recipe {arm.recipe}: " + ", ".join(f"{key.replace('_', ' ')} {_value(value)}" for key, value in changed.items())
    if not arm.overrides:
        return "none: the fast recipe"
    return ", ".join(f"{key.replace('_', ' ')} {_value(value)} (fast: {_value(getattr(fast, key))})" for key, value in arm.overrides)


def _value(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else cell(value)


def run_arm(arm: Arm, args: argparse.Namespace) -> dict[str, Any]:
    """Train one arm (or continue or read back its run folder) and return its row of the results."""
    config = arm_config(arm, args)
    run = RunFolder(config.out)
    try:
        train_unless_finished(config, f"arm {arm.name}: {describe(arm)}")
    except ToolkitError as error:
        if error.exit_code != DIVERGED_EXIT_CODE:
            raise
        atomic.write_json(run.root / DIVERGED_FILE, {"error": str(error)})
    return arm_result(arm, run)


def arm_result(arm: Arm, run: RunFolder) -> dict[str, Any]:
    """One arm's row, read from its run folder's metrics.json."""
    metrics = run.read_metrics()
    diverged = atomic.read_json_object(run.root / DIVERGED_FILE)
    keys = ("epochs_completed", "images_per_second", "best_validation_accuracy", "final_validation_accuracy",
            "seconds_spent", "budget_seconds", "train_images", "validation_images")  # fmt: skip
    return {
        "arm": arm.name,
        "changes": describe(arm),
        "status": "diverged" if diverged else "finished",
        "error": diverged["error"] if diverged else None,
        "run": str(run.root),
        **{key: metrics.get(key) for key in keys},
    }


def markdown(results: dict[str, Any]) -> str:
    """The A/B table with the settings every arm shares."""
    rows = results["arms"]
    split = next((f"{row['train_images']} train / {row['validation_images']} validation images, " for row in rows if row["train_images"]), "")
    lines = [
        "# Same-budget A/B of the short-budget recipe",
        "",
        generated_line(results),
        f"Data `{results['data']}`, limit {results['limit']} ({split}seed {results['seed']}, the same split for every arm), "
        f"width {results['width']:g}, budget {results['budget']} ({results['budget_seconds']:g} s of wall time per arm, "
        "training and validation); arms run one after the other.",
        "",
        "| arm | what changed | epochs done | images/s | best validation top-1 | final validation top-1 | seconds spent / budget |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        name = row["arm"] + (" (diverged)" if row["status"] == "diverged" else "")
        lines.append(
            f"| {name} | {row['changes']} | {cell(row['epochs_completed'])} | {cell(row['images_per_second'])} | "
            f"{percent(row['best_validation_accuracy'])} | {percent(row['final_validation_accuracy'])} | "
            f"{cell(row['seconds_spent'])} / {results['budget_seconds']:g} |"
        )
    lines += [""] + [f"{row['arm']} diverged: {row['error']}" for row in rows if row["error"]]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    """Run (or read back) every chosen arm, rewriting the results after each."""
    args = parse_arguments(argv)
    arms = select_arms(args.arms)
    results = arm_sitting("recipe.py", argv, args, width=args.width, seed=SEED, arms=[])
    for arm in arms:
        results["arms"].append(run_arm(arm, args))
        write_results(results, markdown(results), args.results, args.markdown)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    run_script(main)

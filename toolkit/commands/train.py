"""`toolkit train`: flags -> training.train.TrainConfig -> training.train.train."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def _defaults() -> dict:
    # TrainConfig lives in a module without Keras, so --help stays fast.
    from training.train_config import TrainConfig

    return TrainConfig().to_dict()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for every TrainConfig field; defaults are shown by --help."""
    from training.allcnn import ARCHITECTURES
    from training.augment import AUGMENTATIONS
    from training.train_config import PRECISIONS, RECIPES, SCHEDULES, STRATEGIES

    d = _defaults()

    def recipe(field: str) -> str:  # the values a field takes from each recipe when not given
        return " (default from --recipe: " + ", ".join(f"{name} {values[field]}" for name, values in RECIPES.items()) + ")"
    data = parser.add_argument_group("data")
    data.add_argument("--data", default=d["data"], help="cifar10, fashion-mnist, or an image folder ROOT/<class>/<image>")
    data.add_argument("--limit", type=int, default=d["limit"], metavar="N", help="use a seeded class-balanced subset of N images")
    data.add_argument("--validation-fraction", type=float, default=d["validation_fraction"], help="stratified share held out for validation")
    data.add_argument("--augmentation", choices=AUGMENTATIONS, default=argparse.SUPPRESS, help="paper: pad-4 crop + flip; cutout: paper + 8x8 cutout" + recipe("augmentation"))
    data.add_argument("--workers", type=int, default=d["workers"], help="threads preparing batches alongside training")
    model = parser.add_argument_group("model")
    model.add_argument("--from", dest="from_model", default=None, metavar="MODEL", help="start from a trained .keras, or 'pretrained' (the shipped reference model): its layers and weights, a new classifier when the classes differ, a tenth of the recipe's learning rate")
    model.add_argument("--freeze-stages", type=int, choices=(0, 1, 2), default=d["freeze_stages"], help="with --from: keep the first 1 or 2 down-sampling stages fixed")
    model.add_argument("--architecture", choices=tuple(ARCHITECTURES), default=d["architecture"], help="the paper's model family")
    model.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help="BatchNormalization after every conv but the classifier" + recipe("batch_norm"))
    model.add_argument("--input-dropout", type=float, default=argparse.SUPPRESS, help="dropout on the input image" + recipe("input_dropout"))
    model.add_argument("--stage-dropout", type=float, default=argparse.SUPPRESS, help="dropout after each down-sampling stage" + recipe("stage_dropout"))
    model.add_argument("--width", type=float, default=d["width"], help="filter-count multiplier")
    optimisation = parser.add_argument_group("optimisation")
    optimisation.add_argument("--recipe", choices=tuple(RECIPES), default=d["recipe"], help="defaults of the flags left unset: paper, or fast (short-budget: batch norm, no dropout, Nesterov, label smoothing, cutout, bfloat16)")
    optimisation.add_argument("--budget", default=None, metavar="TIME", help="train for this wall time (e.g. 2h, 90m, 5400) instead of --epochs; the learning rate follows the share spent")
    optimisation.add_argument("--epochs", type=int, default=d["epochs"], help="epochs to train (paper: 350 with --schedule paper)")
    optimisation.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help="global batch size (split across replicas)" + recipe("batch_size"))
    optimisation.add_argument("--schedule", choices=SCHEDULES, default=argparse.SUPPRESS, help="cosine: warm-up + cosine decay; linear: warm-up + linear decay; paper: x0.1 at epochs 200/250/300 of 350, scaled to --epochs" + recipe("schedule"))
    optimisation.add_argument("--learning-rate", type=float, default=argparse.SUPPRESS, help="peak learning rate" + recipe("learning_rate"))
    optimisation.add_argument("--warmup-epochs", type=float, default=d["warmup_epochs"], help="cosine warm-up by epochs, at most a tenth of the run")
    optimisation.add_argument("--warmup-fraction", type=float, default=d["warmup_fraction"], help="share of the run spent warming up (linear schedule, --budget)")
    optimisation.add_argument("--momentum", type=float, default=d["momentum"], help="SGD momentum")
    optimisation.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help="Nesterov momentum" + recipe("nesterov"))
    optimisation.add_argument("--weight-decay", type=float, default=argparse.SUPPRESS, help="L2 coefficient added to the gradient (the paper's weight decay)" + recipe("weight_decay"))
    optimisation.add_argument("--label-smoothing", type=float, default=argparse.SUPPRESS, help="label smoothing of the cross-entropy" + recipe("label_smoothing"))
    optimisation.add_argument("--ema", type=float, default=d["ema"], help="per-step decay of a moving average of the weights, validated and saved (e.g. 0.999); 0 is off")
    optimisation.add_argument("--precision", choices=PRECISIONS, default=argparse.SUPPRESS, help="bfloat16: fast on AVX512-BF16 CPUs; float16: GPUs" + recipe("precision"))
    optimisation.add_argument("--seed", type=int, default=d["seed"], help="seed of split, weights, shuffling and augmentation")
    run = parser.add_argument_group("run")
    run.add_argument("--out", default=d["out"], metavar="RUN", help="run folder to create")
    run.add_argument("--resume", default=None, metavar="RUN", help="continue an interrupted run with its saved config (other flags are ignored)")
    run.add_argument("--strategy", choices=STRATEGIES, default=d["strategy"], help="mirrored/multiworker (TF_CONFIG): TensorFlow backend; data-parallel: JAX backend")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")


def run(args: argparse.Namespace) -> int:
    """Train and print where the run folder is and its best validation accuracy."""
    from training.train import TrainConfig, train

    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{key: value for key, value in vars(args).items() if key in fields})
    config.progress = not args.no_progress
    run_root = train(config)
    metrics = json.loads((run_root / "metrics.json").read_text())
    print(
        f"run folder: {run_root}  best validation accuracy {metrics['best_validation_accuracy']:.4f} "
        f"(epoch {metrics['best_epoch']} of {metrics['epochs_completed']})",
        file=sys.stdout,
    )
    return 0

"""`toolkit pipeline`: train -> prune -> qat -> convert -> eval, each stage skipped when up to date."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.flags import Flag, add_dataclass_arguments

if typing.TYPE_CHECKING:  # an edge install lists this command without importing the pipeline
    from toolkit.pipeline import PipelineConfig

TOP_LEVEL = ("data", "out", "limit", "model", "epochs_per_stage")
# Pipeline section -> the fields of its stage's config that have a flag here.
SECTION_FLAGS = {"train": ("width",), "prune": ("sparsity",), "convert": ("calib_samples", "max_drop")}
GIVEN_ONLY = Flag(default=argparse.SUPPRESS)  # absent unless given, so the --config value stands


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit pipeline``; each overrides the same setting of --config."""
    from converters.configs import ConvertConfig, PruneConfig
    from toolkit.pipeline import PipelineConfig
    from training.train_config import TrainConfig

    parser.add_argument("--config", default=None, metavar="YAML", help="pipeline settings (see pipeline.yaml in the repository)")
    add_dataclass_arguments(parser, PipelineConfig, dict.fromkeys(TOP_LEVEL, GIVEN_ONLY), fields=TOP_LEVEL)
    for section, config_class in (("train", TrainConfig), ("prune", PruneConfig), ("convert", ConvertConfig)):
        add_dataclass_arguments(parser, config_class, dict.fromkeys(SECTION_FLAGS[section], GIVEN_ONLY), fields=SECTION_FLAGS[section])
    parser.add_argument("--no-prune", action="store_true", help="skip pruning")
    add_dataclass_arguments(parser, PipelineConfig, fields=("force", "progress"))


def build_config(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline config: the YAML file (if any), then the flags on top."""
    from toolkit.pipeline import PipelineConfig

    config = PipelineConfig.from_yaml(args.config) if args.config else PipelineConfig()
    given = {name: getattr(args, name) for name in TOP_LEVEL if hasattr(args, name)}
    for section, names in SECTION_FLAGS.items():
        given[section] = {**getattr(config, section), **{name: getattr(args, name) for name in names if hasattr(args, name)}}
    if args.no_prune:
        given["prune"]["enabled"] = False  # a copy: config.prune stays as read
    return dataclasses.replace(config, **given, force=config.force or args.force, progress=config.progress and not args.no_progress)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline, print the summary table; exit 3 when the converted models fail parity."""
    from toolkit.pipeline import run_pipeline

    result = run_pipeline(build_config(args))
    print(result.table)
    print(f"\nartifacts {result.manifest_path}")
    if result.manifest.get("parity_passed") is False:
        from converters.convert import PARITY_NAME

        convert = result.stages.convert
        raise ToolkitError(
            f"a converted model lost more than {convert.max_drop} top-1 points against the float model; "
            f"see {Path(convert.out) / PARITY_NAME}",
            exit_code=3,
        )
    return 0

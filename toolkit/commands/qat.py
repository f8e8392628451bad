"""`toolkit qat`: quantization-aware fine-tuning that keeps sparsity (converters.qat.qat)."""

from __future__ import annotations

import argparse

from toolkit.commands.prune import add_stage_arguments
from toolkit.flags import Flag, config_from_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``toolkit qat``."""
    from converters.configs import SCHEMES, QatConfig

    add_stage_arguments(parser, QatConfig, {"scheme": Flag(choices=SCHEMES)})


def run(args: argparse.Namespace) -> int:
    """Fine-tune with fake quantisation, write the run folder and print the result."""
    from converters.configs import QatConfig
    from converters.qat import qat

    result = qat(config_from_arguments(QatConfig, args))
    report = result.report
    accuracy = report["validation_accuracy"]
    worst = min(report["sparsity_change_points"].values(), default=0.0)
    print(f"QAT model {result.model_path} (+ {report['qat_weights']})")
    print(f"scheme    {report['scheme']}")
    print(f"sparsity  {report['sparsity_before']['overall']:.2%} -> {report['sparsity']['overall']:.2%} (largest per-layer change {worst:+.2f} points)")
    print(
        f"accuracy  float source {accuracy['source_float']:.2%}; fake-quant {accuracy['fake_quant_before_qat']:.2%} before, "
        f"{accuracy['fake_quant_after_qat']:.2%} after QAT ({report['data']['validation_images']} validation images)"
    )
    print(f"report    {result.report_path}")
    return 0

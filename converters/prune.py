"""Magnitude pruning with fine-tuning (tfmot), on the tf_keras twin of a trained model.

    result = prune(PruneConfig(model="runs/train/best.keras", sparsity=0.5, epochs=2, out="runs/prune"))

The recipe of the tfmot pruning guide (``prune_low_magnitude``, a ``PolynomialDecay`` schedule,
``UpdatePruningStep``, ``strip_pruning``) on every conv kernel, or tfmot's ``sparsity_m_by_n``
with ``structured="2:4"``; the pruned weights go back into a Keras 3 ``OUT/model.keras``.
"""

from __future__ import annotations

import warnings
from typing import Any

from converters import bridge, finetune, stage
from converters.configs import PruneConfig
from converters.sparsity import m_by_n_violations, model_kernels, model_sparsity, sparsity_of_arrays
from toolkit.errors import ToolkitError, ToolkitWarning, first_line


def pruning_schedule_steps(total_steps: int, ramp_fraction: float) -> tuple[int, int]:
    """(end_step, frequency) of a PolynomialDecay that reaches the target inside ``total_steps``.

    Masks update at steps 0, f, 2f, ... <= end (``UpdatePruningStep`` counts from 0),
    so end is a multiple of f and at most ``total_steps - 1``: the last update applies
    the target sparsity exactly.
    """
    if total_steps < 2:
        raise ToolkitError(f"pruning needs at least 2 fine-tuning steps, this run has {total_steps}: raise --epochs or lower --batch-size")
    ramp_steps = max(1, min(total_steps - 1, int(round((total_steps - 1) * ramp_fraction))))
    frequency = max(1, ramp_steps // 20)  # about 20 mask updates along the ramp
    return (ramp_steps // frequency) * frequency, frequency


def prune(config: PruneConfig) -> stage.StageResult:
    """Prune and fine-tune ``config.model``; write OUT/model.keras, its card, config.json, report.json."""
    begun = stage.start_stage(config)
    source, data = begun.source, begun.data
    total_steps = len(data.train_source()) * config.epochs
    end_step, frequency = pruning_schedule_steps(total_steps, config.ramp_fraction)
    m_by_n = config.m_by_n()
    target = m_by_n[0] / m_by_n[1] if m_by_n else config.sparsity
    try:
        stripped, rows = prune_model(source.twin(), data, config, target, m_by_n, end_step, frequency)
    except ValueError as error:  # a layer tfmot cannot prune
        raise ToolkitError(f"tfmot cannot prune {source.path.name}: {first_line(error)}") from None
    sparsity = model_sparsity(stripped)
    model = bridge.keras3_from_weights(source.model_config, bridge.layer_weights(stripped))
    accuracy_after = finetune.accuracy(model, source.card, data.validation)

    structured_report = None
    if m_by_n:
        structured_report = {
            "pattern": f"{m_by_n[0]}:{m_by_n[1]}",
            "violating_blocks": {name: m_by_n_violations(kernel, *m_by_n) for name, kernel in model_kernels(model)},
        }
    notes = (
        f"toolkit prune: tfmot prune_low_magnitude, PolynomialDecay 0 -> {target:g} over steps 0..{end_step} "
        f"(every {frequency}) of {total_steps}, strip_pruning; kernels pruned, biases dense"
    )
    history_entry = f"prune:{structured_report['pattern']}" if structured_report else f"prune:{target:g}"
    card = begun.card(sparsity.overall, history_entry, notes, {"validation_accuracy": accuracy_after})
    details = {
        "target_sparsity": target,
        "structured": structured_report,
        "schedule": {"begin_step": 0, "end_step": end_step, "frequency": frequency, "total_steps": total_steps},
        "sparsity": sparsity.to_dict(),
        "validation_accuracy": {"before": begun.accuracy_before, "after": accuracy_after},
    }
    result = stage.finish_stage(begun, "prune", config, model, card, rows, details)
    # Under M:N a kernel whose input channels are not a multiple of N (conv1: RGB) pads its
    # last block and ends less sparse; that is the pattern, not a shortfall.
    uneven = {name for name, kernel in model_kernels(model) if m_by_n and kernel.shape[-2] % m_by_n[1]}
    short = [name for name, value in sparsity.per_layer.items() if value < target - 0.01 and name not in uneven]
    if short:
        warnings.warn(f"layers {', '.join(short)} ended below the target sparsity {target:g}", ToolkitWarning, stacklevel=2)
    return result


def prune_model(twin: Any, data: finetune.FineTuneData, config: PruneConfig, target: float, m_by_n: tuple[int, int] | None,
                end_step: int, frequency: int) -> tuple[Any, list[dict[str, Any]]]:  # fmt: skip
    """tfmot's recipe on a tf_keras model: prune_low_magnitude, fine-tune, strip_pruning; returns the pruned model and the history."""
    from training.tensorflow_stack import tfmot

    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target, begin_step=0, end_step=end_step, frequency=frequency
    )
    structure = {"sparsity_m_by_n": m_by_n} if m_by_n else {}
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(twin, pruning_schedule=schedule, **structure)
    rows = finetune.fit(wrapped, data, config, "pruning", [tfmot.sparsity.keras.UpdatePruningStep()], _sparsity_column)
    return tfmot.sparsity.keras.strip_pruning(wrapped), rows


def _sparsity_column(model: Any) -> dict[str, float]:
    """The history row's sparsity: the fraction of zeros in the masks of a model wrapped by ``prune_low_magnitude``."""
    masks = [(layer.name, mask.numpy()) for layer in model.layers for _, mask, _ in getattr(layer, "pruning_vars", [])]
    return {"sparsity": round(sparsity_of_arrays(masks).overall, 6)}

"""Magnitude pruning with fine-tuning (tfmot), on the tf_keras twin of a trained model.

    result = prune(PruneConfig(model="runs/train/best.keras", sparsity=0.5, epochs=2, out="runs/prune"))

The recipe of the tfmot pruning guide: ``prune_low_magnitude`` with a
``PolynomialDecay`` schedule from 0 to the target sparsity, ``UpdatePruningStep``
during fine-tuning on the source run's training data and augmentation, then
``strip_pruning``. The schedule reaches the target at ``ramp_fraction`` of the
fine-tuning, so the last steps recover accuracy at the final sparsity. Every conv
kernel is pruned to the target (biases stay dense). ``structured="2:4"`` keeps the 2
largest of every 4 consecutive input-channel weights instead (tfmot's
``sparsity_m_by_n``), the pattern sparse tensor cores accelerate; it is 50 % sparse
from the first step.

The pruned weights go back into a Keras 3 model (``OUT/model.keras``), so every
stage's artifact has the same format and ``toolkit eval`` reads it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from converters import bridge, finetune, stage
from converters.sparsity import m_by_n_violations, model_kernels, model_sparsity
from toolkit import atomic
from toolkit.errors import ToolkitError


@dataclasses.dataclass
class PruneConfig:
    """One pruning run; saved in OUT/config.json."""

    model: str  # the trained Keras 3 model (.keras with its card)
    out: str = "runs/prune"  # run folder for the pruned model, card, report
    sparsity: float = 0.5  # target fraction of zero kernel weights
    structured: str | None = None  # "2:4" for M:N structured sparsity (then sparsity is M/N)
    epochs: int = 2  # fine-tuning epochs
    learning_rate: float = 0.01  # peak learning rate of the fine-tuning (cosine decay to 0)
    ramp_fraction: float = 0.75  # share of the fine-tuning steps over which sparsity ramps 0 -> target
    data: str | None = None  # training data; default: the source run's
    limit: int | None = None  # class-balanced subset; default: the source run's
    batch_size: int | None = None  # default: the source run's
    augmentation: str | None = None  # default: the source run's
    seed: int | None = None  # split and shuffle seed; default: the source run's
    progress: bool = True  # progress bars
    overwrite: bool = False  # replace a finished run in OUT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def m_by_n(self) -> tuple[int, int] | None:
        if not self.structured:
            return None
        try:
            kept_zeros, block = (int(part) for part in self.structured.split(":"))
        except ValueError:
            raise ToolkitError(f"--structured must look like M:N (e.g. 2:4), got {self.structured!r}") from None
        if not 0 < kept_zeros < block:
            raise ToolkitError(f"--structured {self.structured}: M must be between 1 and N-1")
        return kept_zeros, block

    def validate(self) -> None:
        checks = [
            (0.0 < self.sparsity < 1.0, f"--sparsity must be between 0 and 1 (exclusive), got {self.sparsity}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.learning_rate > 0, f"--learning-rate must be positive, got {self.learning_rate}"),
            (0.0 < self.ramp_fraction <= 1.0, f"--ramp-fraction must be in (0, 1], got {self.ramp_fraction}"),
            (self.batch_size is None or self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ToolkitError(message)
        self.m_by_n()


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
    from training.tensorflow_stack import tf_keras, tfmot

    config.validate()
    started = time.perf_counter()
    begun = finetune.start_stage(config)
    out, source, data, accuracy_before = begun.out, begun.source, begun.data, begun.accuracy_before
    settings = data.settings

    steps_per_epoch = len(data.train_source())
    total_steps = steps_per_epoch * config.epochs
    end_step, frequency = pruning_schedule_steps(total_steps, config.ramp_fraction)
    m_by_n = config.m_by_n()
    target = m_by_n[0] / m_by_n[1] if m_by_n else config.sparsity

    tf_keras.utils.set_random_seed(settings.seed)
    twin = source.twin()
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=target, begin_step=0, end_step=end_step, frequency=frequency
    )
    options: dict[str, Any] = {"pruning_schedule": schedule}
    if m_by_n:
        options["sparsity_m_by_n"] = m_by_n
    try:
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(twin, **options)
    except ValueError as error:
        raise ToolkitError(f"tfmot cannot prune {source.path.name}: {str(error).splitlines()[0]}") from None

    rows = finetune.fit(
        wrapped,
        data,
        config.epochs,
        config.learning_rate,
        extra_callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        epoch_metrics=lambda model: {"sparsity": round(_mask_sparsity(model), 6)},
        progress=config.progress,
        description="pruning",
    )
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    sparsity = model_sparsity(stripped)
    model = bridge.keras3_from_weights(source.model_config, bridge.layer_weights(stripped))
    accuracy_after = finetune.accuracy(model, data.validation, data.mean, data.std)

    structured_report = None
    if m_by_n:
        structured_report = {
            "pattern": f"{m_by_n[0]}:{m_by_n[1]}",
            "violating_blocks": {name: m_by_n_violations(kernel, *m_by_n) for name, kernel in model_kernels(model)},
        }
    card = source.card.replace(
        sparsity=round(sparsity.overall, 6),
        source_sha256=source.sha256,
        history=[*source.card.history, f"prune:{structured_report['pattern'] if m_by_n else f'{target:g}'}"],
        metrics={
            "validation_accuracy": accuracy_after,
            **data.card_metrics(),
        },
        notes=(
            f"toolkit prune: tfmot prune_low_magnitude, PolynomialDecay 0 -> {target:g} over steps 0..{end_step} "
            f"(every {frequency}) of {total_steps}, strip_pruning; kernels pruned, biases dense"
        ),
    )
    stage.write_config(out, {"prune": config.to_dict(), "data": settings.to_dict(), "source": str(source.path), "source_sha256": source.sha256})
    model_path = bridge.save_keras3(model, card, out / stage.MODEL_NAME)
    finetune.write_history_csv(rows, out / stage.HISTORY_NAME)
    saved_card = card.replace(sizes={"raw": model_path.stat().st_size, "gzip": atomic.gzip_size(model_path)})
    report = {
        "stage": "prune",
        "model": str(model_path),
        "source": str(source.path),
        "source_sha256": source.sha256,
        "target_sparsity": target,
        "structured": structured_report,
        "schedule": {"begin_step": 0, "end_step": end_step, "frequency": frequency, "total_steps": total_steps},
        "sparsity": sparsity.to_dict(),
        "sizes": saved_card.sizes,
        "validation_accuracy": {"before": accuracy_before, "after": accuracy_after},
        "data": data.summary(),
        "history": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report_path = stage.write_report(out, report)
    # Under M:N a kernel whose input channels are not a multiple of N (conv1: RGB) pads its
    # last block and ends less sparse; that is the pattern, not a shortfall.
    uneven = {name for name, kernel in model_kernels(model) if m_by_n and kernel.shape[-2] % m_by_n[1]}
    short = [name for name, value in sparsity.per_layer.items() if value < target - 0.01 and name not in uneven]
    if short:
        import warnings

        from toolkit.errors import ToolkitWarning

        warnings.warn(f"layers {', '.join(short)} ended below the target sparsity {target:g}", ToolkitWarning, stacklevel=2)
    return stage.StageResult(model_path, report_path, report)


def _mask_sparsity(model: Any) -> float:
    """Fraction of zeros in the pruning masks of a model wrapped by ``prune_low_magnitude``."""
    import numpy as np

    zeros = total = 0
    for layer in model.layers:
        for _, mask, _ in getattr(layer, "pruning_vars", []):
            values = np.asarray(mask.numpy())
            zeros += int(np.count_nonzero(values == 0))
            total += values.size
    return zeros / total if total else 0.0

"""The stage runner of prune and QAT: a run folder shaped like ``toolkit train``'s around a ``model -> model`` transform.

OUT holds model.keras with its card, config.json (the stage's config and the resolved data settings),
history.csv and report.json, written last: a folder with a report holds a complete stage.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from converters import bridge, finetune
from converters.configs import DATA_FIELDS
from toolkit import atomic
from toolkit.model_card import ModelCard, load_card
from training.run_folder import write_history_csv
from training.splits import split_metrics

MODEL_NAME = "model.keras"


@dataclasses.dataclass
class StageResult:
    """What a stage function returns: its main artifact and the report it wrote."""

    model_path: Path  # the stage's model file
    report_path: Path  # the JSON report beside it
    report: dict[str, Any]  # the report's contents


@dataclasses.dataclass
class StageStart:
    """What a fine-tuning stage (prune, QAT) starts from."""

    out: Path  # the prepared run folder
    source: bridge.SourceModel  # the model to fine-tune, with its card
    data: finetune.FineTuneData  # the source run's images, split and normalisation
    accuracy_before: float  # the source model's validation accuracy
    started: float  # time.perf_counter() when the stage began

    def card(self, sparsity: float, history_entry: str, notes: str, metrics: dict[str, float]) -> ModelCard:
        """The source's card for the stage's model: its sparsity, one more history entry, ``metrics`` and the split."""
        card = self.source.card
        return card.replace(
            sparsity=round(sparsity, 6),
            source_sha256=self.source.sha256,
            history=[*card.history, history_entry],
            metrics={**metrics, **split_metrics(self.data.settings, self.data.train, self.data.validation)},
            notes=notes,
        )


def start_stage(config: Any) -> StageStart:
    """Check ``config`` (a PruneConfig or QatConfig), prepare the run folder, load the source model and its training
    data, measure where it starts, seed tf_keras."""
    from training.tensorflow_stack import tf_keras

    config.validate()
    started = time.perf_counter()
    model_path = Path(config.out) / MODEL_NAME
    out = bridge.prepare_folder(config.out, config.overwrite, f"a model ({model_path})" if model_path.exists() else None)
    source = bridge.load_source(config.model)
    overrides = {name: getattr(config, name) for name in DATA_FIELDS}
    data = finetune.load_training_data(source, finetune.resolve_data_settings(source, overrides))
    begun = StageStart(out, source, data, finetune.accuracy(source.model, source.card, data.validation), started)
    tf_keras.utils.set_random_seed(data.settings.seed)
    return begun


def finish_stage(begun: StageStart, name: str, config: Any, model: Any, card: ModelCard, rows: list[dict[str, Any]],
                 details: dict[str, Any], save_extra: Callable[[Path], None] | None = None) -> StageResult:  # fmt: skip
    """Write a fine-tuning stage's folder: config.json, the Keras 3 model with its card (then ``save_extra(model_path)``),
    history.csv and report.json (the stage's ``details`` between the source and the sizes)."""
    out, source, data = begun.out, begun.source, begun.data
    stage_config = {name: config.to_dict(), "data": data.settings.to_dict()}
    atomic.write_json(out / "config.json", {**stage_config, "source": str(source.path), "source_sha256": source.sha256})
    model_path = bridge.save_keras3(model, card, out / MODEL_NAME)
    if save_extra is not None:
        save_extra(model_path)
    write_history_csv(rows, out / "history.csv", columns=list(rows[0]))
    report = {
        "stage": name,
        "model": str(model_path),
        "source": str(source.path),
        "source_sha256": source.sha256,
        **details,
        "sizes": load_card(model_path).sizes,  # measured by save_keras3
        "data": {**data.settings.to_dict(), "train_images": len(data.train), "validation_images": len(data.validation)},
        "history": rows,
        "seconds": round(time.perf_counter() - begun.started, 1),
    }
    return StageResult(model_path, atomic.write_json(out / "report.json", report), report)

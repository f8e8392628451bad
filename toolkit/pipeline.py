"""`toolkit pipeline`: train -> prune -> qat -> convert -> eval in one resumable command (docs/compression.md).

    result = run_pipeline(PipelineConfig.from_yaml("pipeline.yaml"))

Each stage writes ``OUT/<stage>/`` and a stamp ``stage.json`` (config, input and output hashes); a stage whose
stamp still matches is skipped. ``OUT/pipeline.json`` lists every artifact and the summary; the benchmark reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from toolkit import atomic
from toolkit.errors import ToolkitError, first_line
from toolkit.model_card import card_path, load_card

if typing.TYPE_CHECKING:
    from converters.configs import ConvertConfig, PruneConfig, QatConfig
    from training.train_config import TrainConfig

STAGES = ("train", "prune", "qat", "convert", "eval")
STAMP_NAME = "stage.json"
MANIFEST_NAME = "pipeline.json"


@dataclasses.dataclass
class PipelineConfig:
    """The whole path from images to a checked int8 model; read from YAML, overridden by flags."""

    out: str = "runs/pipeline"  # one folder for every stage's artifacts (default: runs/pipeline)
    data: str | None = None  # training data: cifar10 (the default), fashion-mnist or an image folder; with model, the images every later stage uses (default: the model's own)
    limit: int | None = None  # train on a seeded class-balanced subset of this many images
    model: str | None = None  # start from this trained .keras (with card) instead of training
    epochs_per_stage: int | None = None  # when set, the epochs of train, prune and qat
    train: dict[str, Any] = dataclasses.field(default_factory=dict)  # TrainConfig fields (training.train_config)
    prune: dict[str, Any] = dataclasses.field(default_factory=dict)  # PruneConfig fields; enabled: false skips pruning
    qat: dict[str, Any] = dataclasses.field(default_factory=dict)  # QatConfig fields; enabled: false skips QAT
    convert: dict[str, Any] = dataclasses.field(default_factory=dict)  # ConvertConfig fields
    eval: dict[str, Any] = dataclasses.field(default_factory=dict)  # EvalConfig fields: formats (default [int8]), data, limit
    force: bool = False  # rerun every stage even when up to date
    progress: bool = True  # progress bars

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PipelineConfig":
        """The config a YAML file holds; a missing file, bad YAML or an unknown key is a one-line error."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ToolkitError(f"pipeline config {path} does not exist")
        try:
            payload = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ToolkitError(f"pipeline config {path} is not valid YAML: {first_line(error)}") from None
        if not isinstance(payload, dict):
            raise ToolkitError(f"pipeline config {path} must be a mapping of options")
        _check_known_keys(payload, cls, str(path))
        for section in STAGES:
            if payload.get(section) is None:
                payload[section] = {}
            elif not isinstance(payload[section], dict):
                raise ToolkitError(f"{path}: {section} must be a mapping of options, got {payload[section]!r}")
        return cls(**payload)


@dataclasses.dataclass
class EvalConfig:
    """The eval section: which converted formats ``toolkit eval`` scores, on which images."""

    formats: list[str] | None = None  # converted formats to evaluate (default: int8)
    data: str | None = None  # images (default: the pipeline's data, else the data the model was trained on)
    limit: int | None = None  # evaluate a class-balanced subset of this many
    split: str = "validation"  # validation (the held-out split) or all


@dataclasses.dataclass
class StageConfigs:
    """The configuration of each stage the pipeline runs, built once from a PipelineConfig and checked."""

    train: TrainConfig | None  # resolved (the recipe filled in); None when the pipeline starts from config.model
    prune: PruneConfig | None  # None when pruning is off
    qat: QatConfig | None  # None when QAT is off
    convert: ConvertConfig
    eval: EvalConfig  # formats filled in, data the pipeline's when the section names none


@dataclasses.dataclass
class PipelineResult:
    """What run_pipeline returns."""

    manifest_path: Path  # OUT/pipeline.json
    manifest: dict[str, Any]  # its contents
    table: str  # the printed summary
    stages: StageConfigs  # what each stage ran with


def _inputs_sha256(paths: list[Path]) -> str:
    """One hash of a stage's input files: the sha256 of their sha256s."""
    return hashlib.sha256("".join(atomic.file_digest(path) for path in paths).encode()).hexdigest()


def up_to_date(folder: Path, config_hash: str, input_sha256: str | None) -> bool:
    """True when ``folder``'s stamp matches the config, the input and every output file on disk."""
    stamp = atomic.read_json_object(folder / STAMP_NAME)
    if stamp.get("config_hash") != config_hash or stamp.get("input_sha256") != input_sha256:
        return False
    outputs = [(folder / entry["path"], entry["sha256"]) for entry in stamp.get("outputs", {}).values()]
    return all(path.is_file() and atomic.file_digest(path) == sha256 for path, sha256 in outputs)


def write_stamp(folder: Path, stage: str, config_hash: str, input_sha256: str | None, outputs: dict[str, Path], seconds: float) -> None:
    """Write ``folder``'s stamp: the config and input hashes and every output's path and hash."""
    atomic.write_json(
        folder / STAMP_NAME,
        {
            "stage": stage,
            "config_hash": config_hash,
            "input_sha256": input_sha256,
            "outputs": {name: {"path": str(path.relative_to(folder)), "sha256": atomic.file_digest(path)} for name, path in outputs.items()},
            "seconds": round(seconds, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )


def _say(message: str) -> None:
    print(f"[pipeline] {message}", file=sys.stderr, flush=True)


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` (as YAML gives it) fits the type hint ``hint`` of a config field."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(option, value) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):  # YAML's 3 is a fine float; True is not a number
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin in (tuple, list) or hint in (tuple, list):
        return isinstance(value, (tuple, list)) and all(_accepts(item, element) for item in typing.get_args(hint)[:1] for element in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return not isinstance(hint, type) or isinstance(value, hint)


def _check_known_keys(options: dict[str, Any], config_class: type, where: str) -> None:
    """One line naming ``where`` and the first key of ``options`` (alphabetically) that is not a field of ``config_class``."""
    known = sorted(field.name for field in dataclasses.fields(config_class))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ToolkitError(f"{where}: unknown key {unknown[0]!r}; known keys are {', '.join(known)}")


def _check_options(options: dict[str, Any], config_class: type, section: str) -> None:
    """One line naming the first key of pipeline section ``section`` that is unknown or does not fit its type."""
    _check_known_keys(options, config_class, f"pipeline {section} section")
    hints = typing.get_type_hints(config_class)
    for key, value in options.items():
        hint = hints[key]
        if _accepts(hint, value):
            continue
        wanted = str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
        advice = ""
        if isinstance(value, str) and (_accepts(hint, 1) or _accepts(hint, 1.0)):
            advice = " (write a number without quotes; YAML reads 1e-3 as text and 1.0e-3 as a number)"
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and _accepts(hint, "text"):
            advice = " (YAML reads 2:4 or 0.5 as a number: quote it)"
        raise ToolkitError(f"pipeline {section}.{key} must be {wanted}, got {value!r}{advice}")


def _enabled(config: PipelineConfig, section: str) -> bool:
    enabled = getattr(config, section).get("enabled", True)
    if not isinstance(enabled, bool):
        raise ToolkitError(f"pipeline {section}.enabled must be true or false, got {enabled!r}")
    return enabled


def _stage_config(config: PipelineConfig, section: str, config_class: type, defaults: dict[str, Any], fixed: dict[str, Any]) -> Any:
    """``config_class`` from ``defaults``, the section's options (epochs_per_stage but for convert) and ``fixed``, validated."""
    options = {key: value for key, value in getattr(config, section).items() if key != "enabled"}
    _check_options(options, config_class, section)
    if "formats" in options:
        options["formats"] = tuple(options["formats"])
    if section != "convert" and config.epochs_per_stage is not None:
        options["epochs"] = config.epochs_per_stage
    fixed = {"out": str(Path(config.out) / section), "progress": config.progress, **fixed}
    try:
        built = config_class(**(defaults | options | fixed))
        built = built.resolved() if section == "train" else built
        built.validate()
    except ToolkitError as error:
        raise ToolkitError(f"pipeline {section} section: {error}") from None
    return built


def _eval_config(config: PipelineConfig, data: str | None, converted: tuple[str, ...]) -> EvalConfig:
    """The eval section, checked; it evaluates only formats that convert writes."""
    _check_options(config.eval, EvalConfig, "eval")
    filled = {"formats": list(config.eval.get("formats") or ["int8"]), "data": config.eval.get("data") or data}
    evaluation = EvalConfig(**config.eval | filled)
    if evaluation.split not in ("all", "validation"):
        raise ToolkitError(f"pipeline eval.split must be all or validation, got {evaluation.split!r}")
    missing = [name for name in evaluation.formats if name not in converted]
    if missing:
        raise ToolkitError(f"pipeline eval: format {missing[0]} is not converted (convert.formats lists {', '.join(converted)})")
    return evaluation


def build_stage_configs(config: PipelineConfig) -> StageConfigs:
    """Each stage's config from its section and the top-level fields, checked before the first stage runs.

    Each stage's model is the file the stage before it writes (or ``config.model``); from ``model``, the later
    stages take its run's images, which may name another machine's folder, unless ``data`` overrides them."""
    from converters.configs import ConvertConfig, PruneConfig, QatConfig
    from training.train_config import TrainConfig

    _check_options(vars(config), PipelineConfig, "config")
    out = Path(config.out)
    data = config.data or None
    if data and Path(data).exists():
        data = str(Path(data).resolve())
    _enabled(config, "train")  # checked, though training runs whenever no model is given
    train = None
    if not config.model:
        train = _stage_config(config, "train", TrainConfig, {"data": data or "cifar10", "limit": config.limit}, {})
    source = Path(config.model).resolve() if config.model else out / "train" / "best.keras"
    built = {}
    for section, config_class in (("prune", PruneConfig), ("qat", QatConfig), ("convert", ConvertConfig)):
        if _enabled(config, section) or section == "convert":
            fixed = {"model": str(source), "overwrite": True}
            built[section] = _stage_config(config, section, config_class, {"data": data} if config.model else {}, fixed)
            source = out / section / "model.keras"
    evaluation = _eval_config(config, data, built["convert"].formats)
    return StageConfigs(train, built.get("prune"), built.get("qat"), built["convert"], evaluation)


def _stage_train(train_config: TrainConfig, force: bool) -> dict[str, Any]:
    """Train (or resume training) unless up to date; returns the stage's manifest entry."""
    from training.train_config import TrainConfig

    folder = Path(train_config.out)
    config_hash = atomic.settings_digest(train_config.to_dict())
    best = folder / "best.keras"  # the file build_stage_configs hands to prune
    entry = {"folder": "train", "model": "train/best.keras", "card": "train/best.card.json", "metrics": "train/metrics.json"}
    if not force and up_to_date(folder, config_hash, None):
        _say("train: up to date, skipped")
        return {**entry, "skipped": True}

    from training.train import train

    started = time.perf_counter()
    run_config = train_config
    if (folder / "config.json").is_file():
        saved = TrainConfig.requested_by_run(atomic.read_json_object(folder / "config.json"))
        if not force and atomic.settings_digest(saved.to_dict()) == config_hash:
            _say(f"train: continuing the interrupted run in {folder}")
            run_config = TrainConfig(resume=str(folder), progress=train_config.progress)
        else:
            stale = folder.parent / f"train.stale-{time.strftime('%Y%m%d-%H%M%S')}"
            folder.rename(stale)
            _say(f"train: configuration changed; the previous run was moved to {stale}")
    else:
        length = f"a budget of {train_config.budget}" if train_config.budget else f"{train_config.epochs} epoch(s)"
        _say(f"train: {length} on {train_config.data}" + (f" (limit {train_config.limit})" if train_config.limit else ""))
    train(run_config)
    if not best.is_file():
        raise ToolkitError(f"training finished without {best}")
    write_stamp(folder, "train", config_hash, None, {"model": best, "card": card_path(best)}, time.perf_counter() - started)
    return {**entry, "skipped": False}


def _stage_model(stage: str, stage_config: PruneConfig | QatConfig, function: Any, force: bool) -> dict[str, Any]:
    """Run prune or qat on the config's model unless up to date; returns the stage's manifest entry."""
    folder, source = Path(stage_config.out), Path(stage_config.model)
    config_hash = atomic.settings_digest(stage_config.to_dict())
    input_sha = _inputs_sha256([source])
    entry = {"folder": stage, "model": f"{stage}/model.keras", "card": f"{stage}/model.card.json", "report": f"{stage}/report.json"}
    if stage == "qat":
        entry["qat_weights"] = "qat/model.qat.weights.h5"
    if not force and up_to_date(folder, config_hash, input_sha):
        _say(f"{stage}: up to date, skipped")
        return {**entry, "skipped": True}
    _say(f"{stage}: {stage_config.epochs} epoch(s) from {source}")
    started = time.perf_counter()
    result = function(stage_config)
    outputs = {"model": result.model_path, "card": card_path(result.model_path), "report": result.report_path}
    if stage == "qat":
        from converters.qat import qat_companions

        outputs["qat_weights"], outputs["qat_info"] = qat_companions(result.model_path)
    write_stamp(folder, stage, config_hash, input_sha, outputs, time.perf_counter() - started)
    return {**entry, "skipped": False}


def _stage_convert(convert_config: ConvertConfig, force: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Convert the config's model unless up to date; returns the parity report and the stage's manifest entry."""
    from converters.convert import PARITY_NAME, REPORT_NAME, convert, tflite_name
    from converters.qat import qat_companions

    folder, source = Path(convert_config.out), Path(convert_config.model)
    config_hash = atomic.settings_digest(convert_config.to_dict())
    input_sha = _inputs_sha256([source] + [path for path in qat_companions(source) if path.is_file()])
    skipped = not force and up_to_date(folder, config_hash, input_sha)
    if skipped:
        _say("convert: up to date, skipped")
    else:
        _say(f"convert: {', '.join(convert_config.formats)} from {source}")
        started = time.perf_counter()
        result = convert(convert_config)
        outputs = {f"{name}_model": path for name, path in result.models.items()}
        outputs |= {f"{name}_card": card_path(path) for name, path in result.models.items()}
        outputs["report"] = result.report_path
        if result.parity_path:
            outputs["parity"] = result.parity_path
        write_stamp(folder, "convert", config_hash, input_sha, outputs, time.perf_counter() - started)
    parity = atomic.read_json_object(folder / PARITY_NAME)  # absent when convert had no held-out images
    return parity, {
        "folder": "convert",
        "models": {name: f"convert/{tflite_name(name)}" for name in convert_config.formats},
        "cards": {name: f"convert/{card_path(tflite_name(name))}" for name in convert_config.formats},
        "parity": f"convert/{PARITY_NAME}" if parity else None,
        "report": f"convert/{REPORT_NAME}",
        "skipped": skipped,
    }


def _stage_eval(eval_config: EvalConfig, folder: Path, models: dict[str, Path], force: bool, progress: bool) -> dict[str, Any]:
    """``toolkit eval`` of each converted format ``eval_config`` names, into ``folder``; one JSON report per format."""
    from training.evaluate import evaluate, load_evaluation_data, load_predictor
    from training.splits import SplitSettings

    split, bars = eval_config.split, None if progress else False  # None: bars on a terminal only
    entry: dict[str, Any] = {"folder": "eval", "reports": {}, "skipped": True}
    datasets: dict[SplitSettings, Any] = {}  # the converted formats share one split: load its images once
    for name in eval_config.formats:
        model, sub = models[name], folder / name
        data = eval_config.data or load_card(model).dataset
        config_hash = atomic.settings_digest({"data": data, "limit": eval_config.limit, "split": split, "format": name})
        entry["reports"][name] = f"eval/{name}/report.json"
        input_sha = _inputs_sha256([model])
        if not force and up_to_date(sub, config_hash, input_sha):
            _say(f"eval {name}: up to date, skipped")
            continue
        entry["skipped"] = False
        _say(f"eval {name}: {model.name} on the {split} split of {data}")
        started = time.perf_counter()
        predictor = load_predictor(model)
        key = SplitSettings.from_card(predictor.card, data)  # the split load_evaluation_data rebuilds
        if key not in datasets:
            datasets[key] = load_evaluation_data(data, predictor.card, split, eval_config.limit, 0, bars)
        report = evaluate(model, datasets[key], confusion_path=sub / "confusion.png", progress=bars, predictor=predictor)
        report["split"] = split
        report_path = atomic.write_json(sub / "report.json", report)
        write_stamp(sub, "eval", config_hash, input_sha, {"report": report_path}, time.perf_counter() - started)
    return entry


def summary_rows(out: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per artifact: accuracy on the validation split, size, gzip size, sparsity."""
    rows = []
    stages = manifest["stages"]
    for stage in [name for name in ("train", "prune", "qat") if name in stages]:
        entry = stages[stage]
        card = atomic.read_json_object(out / entry["card"])
        model = out / entry["model"]
        metrics = card.get("metrics", {})
        fake_quant = metrics.get("qat_validation_accuracy") if stage == "qat" else None
        rows.append(
            {
                "stage": stage,
                "artifact": entry["model"],
                "accuracy": metrics.get("validation_accuracy"),
                "images": metrics.get("validation_images"),
                "bytes": model.stat().st_size if model.exists() else None,
                "gzip_bytes": (card.get("sizes") or {}).get("gzip") or (atomic.gzip_size(model) if model.exists() else None),
                "sparsity": card.get("sparsity") or 0.0,
                "note": f"fake-quant {fake_quant:.2%}" if fake_quant is not None else "",
            }
        )
    convert_entry, evaluations = stages["convert"], stages["eval"]["reports"]
    parity = atomic.read_json_object(out / convert_entry["parity"]) if convert_entry["parity"] else {}
    for name, relative in convert_entry["models"].items():
        card = atomic.read_json_object(out / convert_entry["cards"][name])
        evaluation = atomic.read_json_object(out / evaluations[name]) if name in evaluations else {}
        measured = parity.get("formats", {}).get(name, {})
        note = (
            f"parity {measured['gap_points']:+.2f} pt, agree {measured['agreement']:.2%} on {measured['images']} held-out"
            if measured
            else ""
        )
        rows.append(
            {
                "stage": f"convert {name}",
                "artifact": relative,
                "accuracy": evaluation.get("top1", measured.get("top1")),
                "images": evaluation.get("n", measured.get("images")),
                "bytes": (card.get("sizes") or {}).get("raw"),
                "gzip_bytes": (card.get("sizes") or {}).get("gzip"),
                "sparsity": card.get("sparsity") or 0.0,
                "note": note,
            }
        )
    return rows


def trained_model(out: Path, manifest: dict[str, Any]) -> Path:
    """The float model a pipeline run started from: the one it trained, or the ``--model`` it was given."""
    stages = manifest["stages"]
    return out / (stages.get("source") or stages["train"])["model"]  # a source model's path is absolute


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The summary rows as the text table ``toolkit pipeline`` prints."""
    header = f"{'stage':<17} {'top-1':>7} {'images':>6} {'MB':>7} {'gzip MB':>8} {'sparsity':>8}  note"
    lines = [header, "-" * len(header)]
    for row in rows:
        accuracy = f"{row['accuracy']:.2%}" if row["accuracy"] is not None else "-"
        size, gzip_size = (f"{row[key] / 1e6:.3f}" if row[key] else "-" for key in ("bytes", "gzip_bytes"))
        lines.append(
            f"{row['stage']:<17} {accuracy:>7} {row['images'] or '-':>6} {size:>7} {gzip_size:>8} {row['sparsity']:>8.1%}  {row['note']}"
        )
    return "\n".join(lines)


def run_pipeline(config: PipelineConfig) -> PipelineResult:
    """Run every stage that is not up to date, write pipeline.json and return the summary."""
    from converters.prune import prune
    from converters.qat import qat

    stages = build_stage_configs(config)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest: dict[str, Any] = {"out": str(out.resolve()), "config": dataclasses.asdict(config), "stages": {}}
    entries = manifest["stages"]
    if stages.train is None:
        from training.model_files import check_model_path

        model = check_model_path(config.model).resolve()
        load_card(model)  # a missing or broken card fails here, before any stage
        entries["source"] = {"model": str(model)}
        _say(f"starting from the trained model {model}")
    else:
        entries["train"] = _stage_train(stages.train, config.force)
    for stage, stage_config, function in (("prune", stages.prune, prune), ("qat", stages.qat, qat)):
        if stage_config is not None:
            entries[stage] = _stage_model(stage, stage_config, function, config.force)
    parity, entries["convert"] = _stage_convert(stages.convert, config.force)
    models = {name: out / relative for name, relative in entries["convert"]["models"].items()}
    entries["eval"] = _stage_eval(stages.eval, out / "eval", models, config.force, config.progress)

    rows = summary_rows(out, manifest)
    manifest["summary"] = rows
    manifest["parity_passed"] = parity.get("passed")
    manifest["seconds_this_session"] = round(time.perf_counter() - started, 1)
    manifest_path = atomic.write_json(out / MANIFEST_NAME, manifest)
    return PipelineResult(manifest_path, manifest, format_summary(rows), stages)

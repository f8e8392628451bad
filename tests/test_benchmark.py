"""`toolkit benchmark` on a tiny All-CNN-C: every format found, measured, and reported honestly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _quick_config(**changes):
    from toolkit.benchmark.run import BenchmarkConfig
    from toolkit.benchmark.worker import TimingConfig

    timing = TimingConfig(runs=20, min_seconds=0.05, warmup_seconds=0.02)
    return BenchmarkConfig(threads=(1,), timing=timing, produce_missing=False, **changes)


def test_row_format_reads_card_history(tiny_models, tmp_path):
    from toolkit.benchmark.run import row_format
    from toolkit.model_card import ModelCard, load_card

    def format_of(path):
        return row_format(path, load_card(path))[0]

    int8 = tiny_models["convert"] / "model_int8.tflite"
    card = json.loads((tiny_models["convert"] / "model_int8.card.json").read_text())
    assert format_of(int8) == "tflite-int8-ptq"
    for history, expected in ((["train", "qat"], "tflite-int8-qat"), (["train", "prune", "qat"], "tflite-int8-pruned-qat")):
        copy = tmp_path / f"{expected}.tflite"
        copy.write_bytes(int8.read_bytes())
        (tmp_path / f"{expected}.card.json").write_text(json.dumps(dict(card, history=history)))
        assert format_of(copy) == expected
    assert format_of(tiny_models["run"] / "best.keras") == "keras-float"
    assert row_format(int8, None) == (None, f"it has no model card ({int8.with_suffix('.card.json').name}) beside it")
    edgetpu_build = tmp_path / "model_int8_edgetpu.tflite"
    assert row_format(edgetpu_build, None) == (None, "it is an Edge TPU build: its int8 row's Edge TPU column measures it")
    pruned = tmp_path / "copy.tflite"  # a name that says nothing: the card tells
    assert row_format(pruned, ModelCard.from_dict(dict(card, history=["train", "prune"]))) == (
        None, "it is an int8 model of a pruned model without QAT, not one of the table's rows")
    assert row_format(pruned, ModelCard.from_dict(dict(card, format="onnx"))) == (None, "its card's format 'onnx' is none of the table's")


def test_benchmark_convert_folder_measures_every_format(tiny_models, sample_dataset, tmp_path):
    """Accuracy and agreement are recomputed here independently of the benchmark's worker processes."""
    from toolkit.benchmark.run import run_benchmark
    from edge_app.runtime import TFLitePredictor

    out = tmp_path / "out"
    report = run_benchmark(tiny_models["convert"], out, _quick_config(), data=str(sample_dataset.source), progress=False)
    assert [row["format"] for row in report["formats"]] == ["tflite-float32", "tflite-int8-ptq"]
    assert report["held_out_images"] == len(sample_dataset)
    expected = {}
    for row in report["formats"]:
        assert "error" not in row, row
        path = Path(row["model"])
        assert row["size"]["bytes"] == path.stat().st_size
        assert 0 < row["size"]["gzip_bytes"] < row["size"]["bytes"]
        latency = row["latency"]["1"]
        assert latency["runs"] >= 20 and 0 < latency["p50_ms"] <= latency["p95_ms"]
        assert latency["throughput_ips"] == pytest.approx(1000.0 / latency["mean_ms"])
        # A LiteRT process without TensorFlow: far below this TensorFlow-laden test process.
        assert row["tensorflow_imported"] is False
        assert 10 < row["memory"]["peak_rss_mb"] < 400
        assert row["edgetpu"]["runs"] is False and row["edgetpu"]["reason"]
        predictions = TFLitePredictor(path).predict(sample_dataset.images).argmax(axis=-1)
        expected[row["format"]] = predictions
        assert row["accuracy"]["top1"] == pytest.approx(np.mean(predictions == sample_dataset.labels))
    agreement = np.mean(expected["tflite-int8-ptq"] == expected["tflite-float32"])
    assert report["formats"][1]["accuracy"]["agreement_with_float"] == pytest.approx(agreement)
    saved = json.loads((out / "benchmark.json").read_text())
    assert saved["formats"][0]["accuracy"]["top1"] == report["formats"][0]["accuracy"]["top1"]
    markdown = (out / "benchmark.md").read_text()
    assert "TFLite int8 post-training" in markdown and "Edge TPU, TFLite int8 post-training:" in markdown


@pytest.mark.slow
def test_benchmark_run_folder_converts_the_missing_formats(tiny_models, sample_dataset, tmp_path):
    from toolkit.benchmark.run import run_benchmark

    config = _quick_config(limit=40)
    config.produce_missing = True
    config.calibration_samples = 100
    report = run_benchmark(tiny_models["run"], tmp_path, config, data=sample_dataset.source, progress=False)
    rows = {row["format"]: row for row in report["formats"]}
    assert list(rows) == ["keras-float", "tflite-float32", "tflite-float16", "tflite-dynamic", "tflite-int8-ptq"]
    for key, row in rows.items():
        assert "error" not in row, row
        assert row["accuracy"]["images"] == 40
        assert row["produced_here"] == (key != "keras-float")
    assert "keras" in rows["keras-float"]["runtime"] and rows["keras-float"]["tensorflow_imported"]
    # best.keras holds Adam's two moments beside the weights: the row sizes the model without them.
    keras_row = rows["keras-float"]
    assert keras_row["checkpoint_size"]["bytes"] == (tiny_models["run"] / "best.keras").stat().st_size
    assert keras_row["size"]["bytes"] < 0.6 * keras_row["checkpoint_size"]["bytes"]
    assert Path(rows["tflite-int8-ptq"]["model"]).parent == tmp_path / "converted"
    card = json.loads((tmp_path / "converted" / "model_int8.card.json").read_text())
    assert card["input_quantization"]["dtype"] == "int8"
    # The float32 export of the same weights agrees with the Keras model.
    assert rows["tflite-float32"]["accuracy"]["agreement_with_float"] >= 0.95
    assert "TFLite int8 QAT" in report["missing_formats"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    from toolkit.cli import main

    assert main(["benchmark", "--model", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --model")
    (tmp_path / "empty").mkdir()
    assert main(["benchmark", "--model", str(tmp_path / "empty")]) == 2
    assert "holds no .keras or .tflite model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["benchmark", "--model", str(tmp_path), "--threads", "0"])


def _float_model_with_split(tiny_models, folder: Path, sample_dir, **metrics) -> Path:
    """A copy of the float32 model whose card says it was trained on the sample with the split ``metrics``."""
    source = tiny_models["float32"]
    model = folder / source.name
    model.write_bytes(source.read_bytes())
    card = json.loads(source.with_name("model_float32.card.json").read_text())
    (folder / "model_float32.card.json").write_text(json.dumps(dict(card, dataset=str(sample_dir), metrics=metrics)))
    return model


def test_held_out_images_follow_the_split_recorded_in_the_card(tiny_models, sample_dataset, tmp_path, sample_dir):
    from toolkit.benchmark.run import held_out_data
    from training.splits import train_validation_split

    model = _float_model_with_split(tiny_models, tmp_path, sample_dir, validation_fraction=0.2, split_seed=3, train_images=240, validation_images=60)
    held_out = held_out_data({"tflite-float32": model}, data=None, limit=None)
    _, expected = train_validation_split(sample_dataset, 0.2, 3)
    assert len(held_out.labels) == 60 and "validation split (20%, seed 3)" in held_out.description
    np.testing.assert_array_equal(held_out.images, expected.images)
    np.testing.assert_array_equal(held_out.labels, expected.labels)
    assert len(held_out_data({"tflite-float32": model}, data=None, limit=20).labels) == 20


def test_edgetpu_cell_says_why_it_did_not_run(tiny_models, sample_dataset, tmp_path):
    from toolkit.benchmark import run as benchmark_run

    config = _quick_config()
    int8 = tmp_path / "model_int8.tflite"
    int8.write_bytes((tiny_models["convert"] / "model_int8.tflite").read_bytes())
    images = tmp_path / "images.npy"
    np.save(images, sample_dataset.images[:4])

    cell = benchmark_run._edgetpu_cell("tflite-float32", int8, True, "loaded", images, config)
    assert not cell["runs"] and "int8" in cell["reason"]
    cell = benchmark_run._edgetpu_cell("tflite-int8-ptq", int8, False, "libedgetpu.so.1 is missing", images, config)
    assert cell == {"runs": False, "reason": "libedgetpu.so.1 is missing"}
    cell = benchmark_run._edgetpu_cell("tflite-int8-ptq", int8, True, "loaded", images, config)
    assert not cell["runs"] and "no model_int8_edgetpu.tflite" in cell["reason"]
    # A compiled model beside it, but (on this machine) no delegate: the worker's one-line error is the reason.
    (tmp_path / "model_int8_edgetpu.tflite").write_bytes(int8.read_bytes())
    (tmp_path / "model_int8_edgetpu.card.json").write_text((tiny_models["convert"] / "model_int8.card.json").read_text())
    delegate_loads, _ = benchmark_run.edgetpu_delegate_status()
    if not delegate_loads:
        cell = benchmark_run._edgetpu_cell("tflite-int8-ptq", int8, True, "loaded", images, config)
        assert not cell["runs"] and "Edge TPU delegate" in cell["reason"]


def test_held_out_images_are_topped_up_outside_a_limited_training_subset(tiny_models, sample_dataset, tmp_path, sample_dir):
    from toolkit.benchmark.run import held_out_data
    from training.data import stratified_subset
    from training.splits import train_validation_split

    model = _float_model_with_split(tiny_models, tmp_path, sample_dir, validation_fraction=0.2, split_seed=0, train_images=80, validation_images=20)
    held_out = held_out_data({"tflite-float32": model}, data=None, limit=60)
    assert len(held_out.labels) == 60 and "topped up with 40 images" in held_out.description
    trained_on = set(stratified_subset(sample_dataset.labels, 100, 0).tolist())
    _, validation = train_validation_split(sample_dataset.subset(np.sort(list(trained_on))), 0.2, 0)
    training_images = {sample_dataset.images[i].tobytes() for i in trained_on} - {image.tobytes() for image in validation.images}
    assert not training_images & {image.tobytes() for image in held_out.images}


@pytest.mark.slow
def test_peak_memory_is_the_models_not_the_test_sets(tiny_models, sample_dataset, tmp_path):
    """The worker reads its peak before loading the held-out images: 1 or 20,000 of them, the same figure."""
    import subprocess
    import sys

    model = tiny_models["convert"] / "model_int8.tflite"
    peaks = []
    for count in (1, 20_000):
        images = np.resize(sample_dataset.images, (count, 32, 32, 3))  # 20,000: 61 MB, 246 MB as floats
        np.save(tmp_path / "images.npy", images)
        np.save(tmp_path / "labels.npy", np.zeros(count, dtype=np.int64))
        subprocess.run(
            [sys.executable, "-m", "toolkit.benchmark.worker", "--model", str(model), "--images", str(tmp_path / "images.npy"),
             "--labels", str(tmp_path / "labels.npy"), "--result", str(tmp_path / "result.json"), "--runs", "5",
             "--min-seconds", "0.01", "--warmup-seconds", "0"],
            check=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        result = json.loads((tmp_path / "result.json").read_text())
        assert result["accuracy"]["images"] == count
        peaks.append(result["memory"]["peak_rss_mb"])
    assert abs(peaks[1] - peaks[0]) < 10, peaks


def test_a_card_of_another_model_is_refused(tiny_models, tmp_path):
    from toolkit.benchmark.run import discover_models
    from toolkit.errors import ToolkitError

    folder = tmp_path / "swapped"
    folder.mkdir()
    (folder / "model_int8.tflite").write_bytes((tiny_models["convert"] / "model_float32.tflite").read_bytes())
    card = json.loads((tiny_models["convert"] / "model_int8.card.json").read_text())
    card["sizes"] = {"raw": (tiny_models["convert"] / "model_int8.tflite").stat().st_size}
    (folder / "model_int8.card.json").write_text(json.dumps(card))
    for source in (folder, folder / "model_int8.tflite"):
        with pytest.raises(ToolkitError, match=r"model_int8.card.json does not belong to .*model_int8.tflite: the card records a [\d,]+-byte model but the file has [\d,]+ bytes"):
            discover_models(source)
    card["sizes"] = {"raw": (folder / "model_int8.tflite").stat().st_size}
    (folder / "model_int8.card.json").write_text(json.dumps(card))
    assert list(discover_models(folder)) == ["tflite-int8-ptq"]


def test_a_file_that_is_no_row_says_why(tiny_models, tmp_path):
    from toolkit.benchmark.run import discover_models
    from toolkit.errors import ToolkitError

    export = tmp_path / "model_float32.tflite"
    export.write_bytes((tiny_models["convert"] / "model_float32.tflite").read_bytes())
    card = json.loads((tiny_models["convert"] / "model_float32.card.json").read_text())
    (tmp_path / "model_float32.card.json").write_text(json.dumps(dict(card, history=["train", "prune", "qat", "convert"])))
    with pytest.raises(ToolkitError, match="not a row of the benchmark: it is a float export of a pruned or QAT model"):
        discover_models(export)
    with pytest.raises(ToolkitError, match="holds no model that is a row of the benchmark: model_float32.tflite: it is a float export"):
        discover_models(tmp_path)


def test_timing_keeps_going_for_min_seconds_past_the_cap():
    import time

    from toolkit.benchmark.worker import TimingConfig, time_runs

    started = time.perf_counter()
    latencies = time_runs(lambda index: time.sleep(0.01), TimingConfig(runs=10**6, min_seconds=0.3, max_seconds=0.1, warmup_runs=1, warmup_seconds=0))
    assert time.perf_counter() - started >= 0.3 and len(latencies) >= 10

"""Prune -> QAT -> int8 conversion on the committed real images, checked from the outside.

One small All-CNN-C (width 0.125) goes through ``toolkit pipeline`` once (module
fixture; conftest marks the tests that use it slow); the tests then inspect its artifacts
with tools other than the ones that wrote them: Keras 3 for the .keras files, the bare
LiteRT interpreter (no delegates) for the .tflite files, and numpy for the parity figures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import converters  # noqa: F401 - TF_USE_LEGACY_KERAS before TensorFlow loads
from script_support import SCRIPTS, load_script
from toolkit.cli import main
from toolkit.preprocessing import normalize


PIPELINE_YAML = """
out: {out}
data: {data}
train: {{epochs: 1, width: 0.125, batch_size: 32, warmup_epochs: 0}}
prune: {{sparsity: 0.5, epochs: 2}}
qat: {{epochs: 1}}
convert: {{calib_samples: 100, max_drop: 100.0}}
eval: {{formats: [int8]}}
"""


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, sample_dir):
    """Run ``toolkit pipeline`` once; returns (folder, manifest, stdout of the run)."""
    root = tmp_path_factory.mktemp("pipeline")
    config = root / "pipeline.yaml"
    config.write_text(PIPELINE_YAML.format(out=root / "run", data=sample_dir))
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 0
    out = root / "run"
    return out, json.loads((out / "pipeline.json").read_text()), config


def _interpreter(path: Path, delegates: bool = False):
    """A bare LiteRT interpreter; without delegates its op list is the file's, not XNNPACK's."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    options = {} if delegates else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = Interpreter(model_path=str(path), **options)
    interpreter.allocate_tensors()
    return interpreter


def _validation_split(sample_dir: Path):
    from training.data import load_dataset
    from training.splits import train_validation_split

    return train_validation_split(load_dataset(str(sample_dir)), 0.1, 0)


def _keras3_kernels(model_path: Path) -> dict[str, np.ndarray]:
    from training.backend import keras

    model = keras.models.load_model(model_path, compile=False)
    return {layer.name: np.asarray(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")}


def test_bridge_twin_matches_keras3_on_real_images(pipeline_run, sample_dir):
    from converters.bridge import load_source
    from training.data import load_dataset

    out, manifest, _ = pipeline_run
    source = load_source(out / manifest["stages"]["train"]["model"])
    images = normalize(load_dataset(str(sample_dir)).images, source.card.mean, source.card.std)
    twin = source.twin()
    difference = np.abs(np.asarray(source.model(images, training=False)) - np.asarray(twin(images, training=False)))
    assert difference.max() <= 1e-5


def test_prune_reaches_target_sparsity_in_every_kernel(pipeline_run):
    out, manifest, _ = pipeline_run
    kernels = _keras3_kernels(out / manifest["stages"]["prune"]["model"])
    assert len(kernels) == 9
    for name, kernel in kernels.items():
        assert abs(np.mean(kernel == 0) - 0.5) <= 0.01, name
    report = json.loads((out / "prune" / "report.json").read_text())
    card = json.loads((out / "prune" / "model.card.json").read_text())
    assert abs(report["sparsity"]["overall"] - 0.5) <= 0.01
    assert card["sparsity"] == pytest.approx(report["sparsity"]["overall"])
    assert card["history"][-1] == "prune:0.5"
    assert report["sizes"]["gzip"] < report["sizes"]["raw"]
    assert report["schedule"]["end_step"] < report["schedule"]["total_steps"]


def test_qat_keeps_sparsity_and_quantises_every_kernel(pipeline_run):
    from converters.bridge import load_source
    from converters.qat import load_qat_model

    out, manifest, _ = pipeline_run
    before = _keras3_kernels(out / manifest["stages"]["prune"]["model"])
    after = _keras3_kernels(out / manifest["stages"]["qat"]["model"])
    for name in before:
        assert abs(np.mean(after[name] == 0) - np.mean(before[name] == 0)) <= 0.01, name
        assert not np.array_equal(after[name], before[name]), f"{name} did not train"
    qat_model, info = load_qat_model(load_source(out / manifest["stages"]["qat"]["model"]))
    assert info["scheme"] == "prune-preserve"
    # tfmot alone leaves conv kernels followed by a ReLU layer unquantised; all nine must carry ranges.
    quantised = {variable.name.split("/")[0] for variable in qat_model.weights if "kernel_min" in variable.name}
    assert quantised == {f"quant_conv{index}" for index in range(1, 10)}


def test_qat_ranges_start_from_the_float_model_on_real_batches(pipeline_run, sample_dir):
    from converters.bridge import load_source
    from converters.qat import calibrate_ranges, quantize_model
    from training.backend import keras
    from training.data import load_dataset

    out, manifest, _ = pipeline_run
    source = load_source(out / manifest["stages"]["prune"]["model"])
    images = normalize(load_dataset(str(sample_dir)).images, source.card.mean, source.card.std)
    batches = [images[:100], images[100:200]]
    twin = source.twin()
    uncalibrated = quantize_model(source.twin(), "prune-preserve")
    qat_model = quantize_model(twin, "prune-preserve")
    ranges = calibrate_ranges(qat_model, twin, batches)
    assert set(ranges) == {*(f"relu{index}" for index in range(1, 9)), "conv9", "global_average_pool"}

    # Recomputed on the Keras 3 model: each range is the mean over batches of the batch min and max.
    probe = keras.Model(source.model.input, [source.model.get_layer(name).output for name in sorted(ranges)])
    outputs = [[np.asarray(value) for value in probe(batch, training=False)] for batch in batches]
    for position, name in enumerate(sorted(ranges)):
        low = np.mean([min(batch[position].min(), 0.0) for batch in outputs])
        high = np.mean([max(batch[position].max(), 0.0) for batch in outputs])
        np.testing.assert_allclose(ranges[name], [low, high], rtol=1e-4, atol=1e-5)
    variables = {variable.name.split(":")[0]: variable.numpy() for variable in qat_model.weights}
    assert variables["quant_relu1/output_min"] == 0.0
    kernel = np.asarray(source.model.get_layer("conv1").kernel)
    np.testing.assert_allclose(variables["quant_conv1/kernel_max"], np.abs(kernel).max(axis=(0, 1, 2)), rtol=1e-6)
    # Calibrated fake-quant follows the float model closely; tfmot's untouched start (input range [0, 0]) does not.
    float_probabilities = np.asarray(twin(images, training=False))
    calibrated_error = np.abs(np.asarray(qat_model(images, training=False)) - float_probabilities).max(axis=1).mean()
    start_error = np.abs(np.asarray(uncalibrated(images, training=False)) - float_probabilities).max(axis=1).mean()
    assert calibrated_error < 0.02 and calibrated_error < start_error / 3, (calibrated_error, start_error)
    report = json.loads((out / "qat" / "report.json").read_text())
    assert report["calibration"]["batches"] >= 1 and len(report["calibration"]["activation_ranges_before_qat"]) == 10


def test_int8_model_is_fully_integer_with_int8_io(pipeline_run):
    out, manifest, _ = pipeline_run
    interpreter = _interpreter(out / manifest["stages"]["convert"]["models"]["int8"])
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    operators = interpreter._get_ops_details()
    assert [op["op_name"] for op in operators].count("CONV_2D") == 9
    for op in operators:
        types = set(op["operand_types"]) | set(op["result_types"])
        assert types <= {np.int8, np.int32}, (op["op_name"], types)
        assert np.int8 in types, op["op_name"]
    card = json.loads((out / manifest["stages"]["convert"]["cards"]["int8"]).read_text())
    assert card["input_quantization"]["dtype"] == "int8" and card["input_quantization"]["scale"] > 0
    assert card["output_quantization"]["dtype"] == "int8"
    assert card["labels"] and card["source_sha256"]


def test_int8_kernels_keep_the_target_sparsity(pipeline_run):
    out, manifest, _ = pipeline_run
    interpreter = _interpreter(out / manifest["stages"]["convert"]["models"]["int8"])
    kernels = [interpreter.get_tensor(op["inputs"][1]) for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert len(kernels) == 9
    for kernel in kernels:
        assert kernel.dtype == np.int8
        assert np.mean(kernel == 0) >= 0.49


def test_parity_report_recomputed_independently(pipeline_run, sample_dir):
    from training.backend import keras

    out, manifest, _ = pipeline_run
    parity = json.loads((out / manifest["stages"]["convert"]["parity"]).read_text())
    _, validation = _validation_split(sample_dir)
    card = json.loads((out / "qat" / "model.card.json").read_text())
    float_model = keras.models.load_model(out / "qat" / "model.keras", compile=False)
    reference = np.asarray(float_model(normalize(validation.images, card["mean"], card["std"]), training=False))

    # With the default CPU delegate (XNNPACK), as on the device: its int8 rounding can differ
    # from the reference kernels by one code, enough to flip a near-tie of this barely trained model.
    interpreter = _interpreter(out / manifest["stages"]["convert"]["models"]["int8"], delegates=True)
    input_detail, output_detail = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = input_detail["quantization"]
    out_scale, out_zero = output_detail["quantization"]
    converted = []
    for image in normalize(validation.images, card["mean"], card["std"]):
        codes = np.clip(np.round(image / in_scale) + in_zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(input_detail["index"], codes[None])
        interpreter.invoke()
        converted.append((interpreter.get_tensor(output_detail["index"])[0].astype(np.float32) - out_zero) * out_scale)
    converted = np.stack(converted)

    float_top1 = np.mean(reference.argmax(1) == validation.labels)
    int8_top1 = np.mean(converted.argmax(1) == validation.labels)
    assert parity["images"] == len(validation) == 30
    assert parity["float_top1"] == pytest.approx(float_top1)
    assert parity["int8_top1"] == pytest.approx(int8_top1)
    assert parity["gap_points"] == pytest.approx((float_top1 - int8_top1) * 100, abs=1e-4)
    assert parity["agreement"] == pytest.approx(np.mean(reference.argmax(1) == converted.argmax(1)))
    difference = np.abs(reference - converted)
    assert parity["mean_probability_difference"] == pytest.approx(difference.max(1).mean(), abs=1e-5)
    assert parity["max_probability_difference"] == pytest.approx(difference.max(), abs=1e-5)


def test_labels_are_embedded_as_tflite_metadata(pipeline_run):
    from converters.tflite_inspect import LABELS_METADATA, read_tflite

    out, manifest, _ = pipeline_run
    path = out / manifest["stages"]["convert"]["models"]["int8"]
    card = json.loads((out / manifest["stages"]["convert"]["cards"]["int8"]).read_text())
    assert read_tflite(path).metadata[LABELS_METADATA].decode().split("\n") == card["labels"]


def test_edgetpu_check_names_the_first_cpu_operator(pipeline_run):
    from converters.edgetpu import check_operators
    from converters.tflite_inspect import first_non_integer_operator, read_tflite

    out, manifest, _ = pipeline_run
    models = manifest["stages"]["convert"]["models"]
    assert check_operators(read_tflite(out / models["int8"]))["first_cpu_operator"] is None
    float_report = check_operators(read_tflite(out / models["float32"]))
    assert float_report["first_cpu_operator"]["operator"] == "CONV_2D"
    assert "FLOAT32" in float_report["first_cpu_operator"]["reason"]
    assert "CONV_2D" in first_non_integer_operator(read_tflite(out / models["float32"]))


def test_pipeline_summary_manifest_and_skip_on_rerun(pipeline_run, capsys):
    out, manifest, config = pipeline_run
    stages = manifest["stages"]
    for relative in [stages["train"]["model"], stages["prune"]["model"], stages["qat"]["model"], stages["qat"]["qat_weights"],
                     *stages["convert"]["models"].values(), stages["convert"]["parity"], *stages["eval"]["reports"].values()]:  # fmt: skip
        assert (out / relative).is_file(), relative
    assert [row["stage"] for row in manifest["summary"]][:3] == ["train", "prune", "qat"]
    evaluation = json.loads((out / stages["eval"]["reports"]["int8"]).read_text())
    assert evaluation["n"] == 30 and 0.0 <= evaluation["top1"] <= 1.0

    # Rerun as if killed right after training finished (no train stamp): training is resumed,
    # finds every epoch done, and nothing downstream reruns because best.keras is unchanged.
    (out / "train" / "stage.json").unlink()
    best_hash = (out / "train" / "best.keras").read_bytes()
    stamps = {path: path.stat().st_mtime_ns for path in out.glob("*/stage.json")}
    stamps.update({path: path.stat().st_mtime_ns for path in out.glob("eval/*/stage.json")})
    capsys.readouterr()
    assert main(["pipeline", "--config", str(config), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "train: continuing the interrupted run" in captured.err
    assert captured.err.count("up to date, skipped") == 4
    assert "convert int8" in captured.out and "sparsity" in captured.out
    assert (out / "train" / "best.keras").read_bytes() == best_hash
    assert (out / "train" / "stage.json").is_file()
    for path, mtime in stamps.items():
        assert path.stat().st_mtime_ns == mtime, path


@pytest.mark.parametrize("total_steps", [2, 7, 41, 12345])
@pytest.mark.parametrize("ramp_fraction", [0.01, 0.5, 1.0])
def test_pruning_schedule_reaches_the_target_on_a_mask_update_inside_the_run(total_steps, ramp_fraction):
    from converters.prune import pruning_schedule_steps

    end_step, frequency = pruning_schedule_steps(total_steps, ramp_fraction)
    assert end_step % frequency == 0 and 1 <= end_step <= total_steps - 1  # UpdatePruningStep counts from 0
    assert end_step > (total_steps - 1) * ramp_fraction - 2 * frequency  # the ramp is not cut short
    assert (total_steps - 1) * ramp_fraction / frequency <= 40  # about 20 mask updates, not one per step


def test_pruning_needs_two_steps():
    from toolkit.errors import ToolkitError
    from converters.prune import pruning_schedule_steps

    with pytest.raises(ToolkitError, match="at least 2 fine-tuning steps.*raise --epochs"):
        pruning_schedule_steps(1, 0.5)


def test_stage_stamp_notices_a_changed_output(tmp_path):
    from toolkit.pipeline import up_to_date, write_stamp

    artifact = tmp_path / "model.bin"
    artifact.write_bytes(b"weights")
    write_stamp(tmp_path, "prune", "config-hash", "input-hash", {"model": artifact}, 1.0)
    assert up_to_date(tmp_path, "config-hash", "input-hash")
    assert not up_to_date(tmp_path, "other-config", "input-hash")
    assert not up_to_date(tmp_path, "config-hash", "other-input")
    artifact.write_bytes(b"weights, truncated")
    assert not up_to_date(tmp_path, "config-hash", "input-hash")


def test_cli_structured_two_four_pruning(pipeline_run, tmp_path, capsys):
    from converters.sparsity import m_by_n_violations

    out, manifest, _ = pipeline_run
    argv = ["prune", "--model", str(out / manifest["stages"]["train"]["model"]), "--out", str(tmp_path / "p24"),
            "--structured", "2:4", "--epochs", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "sparsity" in capsys.readouterr().out
    report = json.loads((tmp_path / "p24" / "report.json").read_text())
    assert report["structured"]["pattern"] == "2:4"
    for name, kernel in _keras3_kernels(tmp_path / "p24" / "model.keras").items():
        assert m_by_n_violations(kernel, 2, 4) == 0, name
    assert main(argv) != 0  # a finished run is not overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_cli_post_training_uint8_conversion(pipeline_run, tmp_path, capsys):
    """A pruned float model (no QAT companion) takes the calibration path, here with uint8 I/O.

    It converts into a copy of the pipeline's convert folder (four formats): refused without
    --overwrite; with it, the old conversion's other files go once the new one is saved.
    """
    out, manifest, _ = pipeline_run
    shutil.copytree(out / "convert", tmp_path / "u8")
    assert len(list((tmp_path / "u8").glob("model_*.tflite"))) == 4
    argv = ["convert", "--model", str(out / manifest["stages"]["prune"]["model"]), "--out", str(tmp_path / "u8"),
            "--int8", "--io", "uint8", "--calib-samples", "50", "--max-drop", "100", "--no-progress"]  # fmt: skip
    assert "already holds a conversion" in _one_line_error(capsys, argv)
    assert len(list((tmp_path / "u8").glob("model_*.tflite"))) == 4  # nothing lost
    assert main([*argv, "--overwrite"]) == 0
    assert "int8" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "u8").glob("*.tflite")) == ["model_int8.tflite"]
    assert sorted(path.name for path in (tmp_path / "u8").glob("*.card.json")) == ["model_int8.card.json"]
    assert list(json.loads((tmp_path / "u8" / "parity.json").read_text())["formats"]) == ["int8"]
    interpreter = _interpreter(tmp_path / "u8" / "model_int8.tflite")
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    kernels = [interpreter.get_tensor(op["inputs"][1]) for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    for kernel in kernels:
        assert np.mean(kernel == 0) >= 0.49
    # benchmarks/kernel_statistics.py predicts these codes from the float kernels without converting:
    # the same magnitudes (batch-norm folding may flip a channel's sign), off by one on rare rounding ties.
    from training.backend import keras

    int8_codes = load_script("kernel_statistics").int8_codes
    pruned = keras.saving.load_model(out / manifest["stages"]["prune"]["model"], compile=False)
    float_kernels = [layer.get_weights()[0] for layer in pruned.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(float_kernels) == len(kernels)
    for float_kernel, kernel in zip(float_kernels, kernels):
        predicted = np.abs(int8_codes(float_kernel, 0.5).astype(int))
        actual = np.abs(kernel.reshape(kernel.shape[0], -1).astype(int))
        assert np.abs(predicted - actual).max() <= 1 and np.mean(predicted == actual) > 0.999
    card = json.loads((tmp_path / "u8" / "model_int8.card.json").read_text())
    assert "50 calibration images" in card["notes"] and card["input_quantization"]["dtype"] == "uint8"
    parity = json.loads((tmp_path / "u8" / "parity.json").read_text())
    assert parity["formats"]["int8"]["max_probability_difference"] < 0.05


# --- bad input: one line on stderr, non-zero exit, no traceback ---------------------------------


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert code != 0
    assert len(errors) == 1, err
    assert not any("Traceback" in line for line in err)
    return errors[0]


def test_cli_missing_model(capsys, tmp_path):
    message = _one_line_error(capsys, ["prune", "--model", str(tmp_path / "absent.keras"), "--out", str(tmp_path / "p")])
    assert "absent.keras does not exist" in message
    assert not (tmp_path / "p").exists()  # the folder the failed stage made is not left behind, empty


def test_cli_corrupt_model(capsys, tmp_path, pipeline_run):
    out, manifest, _ = pipeline_run
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"this is not a zip archive")
    shutil.copy(out / manifest["stages"]["train"]["card"], tmp_path / "broken.card.json")
    message = _one_line_error(capsys, ["convert", "--model", str(broken), "--out", str(tmp_path / "c")])
    assert "broken.keras" in message and "not a zip archive" in message
    message = _one_line_error(capsys, ["qat", "--model", str(broken), "--out", str(tmp_path / "q")])
    assert "broken.keras" in message


def test_cli_too_few_calibration_images(capsys, tmp_path, pipeline_run, sample_dir):
    out, manifest, _ = pipeline_run
    argv = ["convert", "--model", str(out / manifest["stages"]["prune"]["model"]), "--out", str(tmp_path / "c"), "--int8",
            "--calib", str(sample_dir), "--calib-samples", "1000"]  # fmt: skip
    message = _one_line_error(capsys, argv)
    assert "too few calibration images" in message and "300" in message and "1000" in message


def _quantisation_and_outputs(path: Path, images: np.ndarray) -> tuple[list[tuple], np.ndarray]:
    """Every tensor's name, scales and zero points, and the raw int8 outputs on ``images`` (normalised floats)."""
    interpreter = _interpreter(path)
    rows = [
        (detail["name"], detail["quantization_parameters"]["scales"].tobytes(), detail["quantization_parameters"]["zero_points"].tobytes())
        for detail in interpreter.get_tensor_details()
    ]
    entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = entry["quantization"]
    outputs = []
    for image in images:
        interpreter.set_tensor(entry["index"], np.clip(np.round(image[None] / scale + zero_point), -128, 127).astype(np.int8))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(exit_["index"]).copy())
    return rows, np.concatenate(outputs)


def test_qat_model_needs_no_particular_number_of_calibration_images(pipeline_run, tmp_path, sample_dir):
    """A QAT model carries its ranges: 300 images where 1000 were asked for give the same int8 model as 100 did."""
    out, manifest, _ = pipeline_run
    argv = ["convert", "--model", str(out / manifest["stages"]["qat"]["model"]), "--out", str(tmp_path / "c"), "--int8",
            "--calib", str(sample_dir), "--calib-samples", "1000", "--max-drop", "100", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert report["quantization_aware"] and report["calibration"]["images"] == 300 and not report["calibration"]["sets_ranges"]
    card = json.loads((tmp_path / "c" / "model_int8.card.json").read_text())
    images = normalize(_validation_split(sample_dir)[1].images, card["mean"], card["std"])
    rows, outputs = _quantisation_and_outputs(tmp_path / "c" / "model_int8.tflite", images)
    reference_rows, reference_outputs = _quantisation_and_outputs(out / manifest["stages"]["convert"]["models"]["int8"], images)
    assert rows == reference_rows
    np.testing.assert_array_equal(outputs, reference_outputs)


def test_interrupted_overwrite_leaves_no_parity_report_about_other_models(pipeline_run, tmp_path, monkeypatch):
    from converters import convert

    out, manifest, _ = pipeline_run
    shutil.copytree(out / "convert", tmp_path / "c")

    def interrupted(*arguments, **keywords):
        raise KeyboardInterrupt  # Ctrl-C while parity runs, after the new models were written

    monkeypatch.setattr(convert, "_parity", interrupted)
    config = convert.ConvertConfig(model=str(out / manifest["stages"]["prune"]["model"]), out=str(tmp_path / "c"), formats=("int8",),
                                   io="uint8", calib_samples=50, overwrite=True, progress=False)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        convert.convert(config)
    assert not (tmp_path / "c" / "parity.json").exists() and not (tmp_path / "c" / "report.json").exists()
    assert _interpreter(tmp_path / "c" / "model_int8.tflite").get_input_details()[0]["dtype"] == np.uint8  # the new model


def test_edgetpu_without_the_compiler_warns_and_keeps_the_operator_check(pipeline_run, tmp_path, monkeypatch, sample_dir):
    from converters import convert, edgetpu
    from toolkit.errors import ToolkitError, ToolkitWarning

    out, manifest, _ = pipeline_run
    monkeypatch.setattr(edgetpu, "compiler_path", lambda: None)
    config = convert.ConvertConfig(model=str(out / manifest["stages"]["qat"]["model"]), out=str(tmp_path / "c"), formats=("int8",),
                                   calib=str(sample_dir), edgetpu=True, parity_samples=0, progress=False)  # fmt: skip
    with pytest.warns(ToolkitWarning, match="edgetpu_compiler"):
        result = convert.convert(config)
    assert result.report["edgetpu"]["compiled"] is None and result.report["edgetpu"]["edgetpu_operators"] > 0
    with pytest.raises(ToolkitError, match="edgetpu_compiler"):
        edgetpu.compile_for_edgetpu(tmp_path / "c" / "model_int8.tflite", tmp_path / "c")


def test_eval_from_a_given_model_uses_the_data_it_was_trained_on(pipeline_run, tmp_path, sample_dir):
    """``toolkit pipeline --model M`` without --data: eval takes M's data (as prune and qat do), not the default cifar10."""
    from toolkit.pipeline import PipelineConfig, _stage_eval, build_stage_configs

    out, manifest, _ = pipeline_run
    config = PipelineConfig(model=str(out / manifest["stages"]["train"]["model"]), out=str(tmp_path), progress=False)
    assert config.data is None  # not given; training's default, cifar10, is not here (no download on this machine)
    models = {"int8": out / manifest["stages"]["convert"]["models"]["int8"]}
    _stage_eval(build_stage_configs(config).eval, tmp_path / "eval", models, force=False, progress=False)
    report = json.loads((tmp_path / "eval" / "int8" / "report.json").read_text())
    assert report["n"] == 30 and str(sample_dir) in json.dumps(report)


PIPELINE_MISTAKES = [
    ("qat: {learning_rate: 1e-3}", "qat.learning_rate must be float, got '1e-3' (write a number without quotes"),
    ("prune: {structured: 2:4}", "prune.structured must be str | None, got 124 (YAML reads 2:4 or 0.5 as a number: quote it)"),
    ("eval: {split: valid}", "eval.split must be all or validation, got 'valid'"),
    ("limit: '200'", "config.limit must be int | None, got '200'"),
    ("out: null", "config.out must be str, got None"),
    ("convert: {formats: [int8]}\neval: {formats: [float16]}", "eval: format float16 is not converted (convert.formats lists int8)"),
    ("qat: {epochs: 2.5}", "qat.epochs must be int, got 2.5"),
    ("prune: {sparsity: 1.5}", "prune section: --sparsity must be between 0 and 1"),
    ("prune: {enabled: no-thanks}", "prune.enabled must be true or false"),
    ("prune: {sparsty: 0.5}", "pipeline prune section: unknown key 'sparsty'; known keys are"),
    ("epoch: 3", "unknown key 'epoch'; known keys are"),
]


@pytest.mark.parametrize(("yaml_text", "message"), PIPELINE_MISTAKES)
def test_pipeline_config_mistakes_are_named_before_any_stage_runs(yaml_text, message, tmp_path, capsys):
    config = tmp_path / "pipeline.yaml"
    lines = [f"data: {tmp_path}", yaml_text]
    if not yaml_text.startswith("out:"):
        lines.insert(0, f"out: {tmp_path / 'run'}")
    config.write_text("\n".join(lines) + "\n")
    error = _one_line_error(capsys, ["pipeline", "--config", str(config), "--no-progress"])
    assert message in error
    assert not (tmp_path / "run").exists()  # nothing ran


def test_a_finished_conversion_is_reused_only_for_the_same_config_and_model(pipeline_run, tmp_path):
    import dataclasses

    from converters.convert import REPORT_NAME, ConvertConfig, finished_report

    out, _, _ = pipeline_run
    config = ConvertConfig(**json.loads((out / "convert" / REPORT_NAME).read_text())["config"])
    assert finished_report(config)["source_sha256"]
    assert finished_report(dataclasses.replace(config, progress=not config.progress)) is not None  # how it reports
    assert finished_report(dataclasses.replace(config, calib_samples=7)) is None
    assert finished_report(dataclasses.replace(config, formats=("float16",))) is None
    moved = shutil.copy(config.model, tmp_path / "moved.keras")
    assert finished_report(dataclasses.replace(config, model=str(moved))) is not None  # the same bytes elsewhere
    changed = shutil.copy(config.model, tmp_path / "model.keras")
    with open(changed, "ab") as file:
        file.write(b"\0")
    assert finished_report(dataclasses.replace(config, model=str(changed))) is None
    assert finished_report(dataclasses.replace(config, model=str(tmp_path / "missing.keras"))) is None


def test_parity_failure_exits_non_zero(tmp_path):
    from converters.convert import ConvertResult, check_parity
    from toolkit.errors import ToolkitError

    parity = {"reference_top1": 0.9, "images": 1000, "formats": {"int8": {"top1": 0.88, "gap_points": 2.0}}}
    result = ConvertResult({}, tmp_path / "parity.json", parity, tmp_path / "report.json", {})
    check_parity(result, 2.5)
    with pytest.raises(ToolkitError) as raised:
        check_parity(result, 1.0)
    assert raised.value.exit_code == 3 and "model_int8.tflite" in str(raised.value)


def test_layer_tfmot_cannot_quantise_is_named():
    from converters.qat import check_quantizable
    from toolkit.errors import ToolkitError
    from training.tensorflow_stack import tf_keras

    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = tf_keras.layers.LayerNormalization(name="odd_norm")(x)
    model = tf_keras.Model(inputs, x)
    with pytest.raises(ToolkitError, match="odd_norm"):
        check_quantizable(model)


def test_ship_pretrained_ships_the_better_int8_model_with_its_float_parent(pipeline_run, tmp_path, monkeypatch, capsys):
    out, _, _ = pipeline_run
    run = shutil.copytree(out, tmp_path / "run")  # the script adds convert-ptq/ to the run: not to the shared one
    shipped = tmp_path / "pretrained"
    script = load_script("ship_pretrained", SCRIPTS)
    monkeypatch.setattr("sys.argv", ["ship_pretrained.py", str(run), "--out", str(shipped)])
    assert script.main() == 0
    figures = json.loads((shipped / "figures.json").read_text())
    scores = {name: parity["int8_top1"] for name, parity in figures["int8"].items()}
    assert set(scores) == {"qat", "ptq"} and scores[figures["shipped"]] == max(scores.values())
    chosen = run / ("convert" if figures["shipped"] == "qat" else "convert-ptq")
    assert (shipped / "model_int8.tflite").read_bytes() == (chosen / "model_int8.tflite").read_bytes()
    assert json.loads((shipped / "parity.json").read_text()) == json.loads((chosen / "parity.json").read_text())
    for name in ("model_int8.card.json", "history.csv", "curves.png", "model.keras", "model.card.json"):
        assert (shipped / name).is_file(), name
    float_kernels, trained_kernels = _keras3_kernels(shipped / "model.keras"), _keras3_kernels(run / "train" / "best.keras")
    assert float_kernels.keys() == trained_kernels.keys()
    assert all(np.allclose(float_kernels[name], trained_kernels[name]) for name in float_kernels)
    assert f"shipped the {figures['shipped']} int8 model to {shipped}" in capsys.readouterr().out

"""`toolkit classify` end to end, in a subprocess where TensorFlow and Keras cannot be imported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_support import REPO_ROOT, json_lines, run_without_tensorflow, write_lossless_video


def reference_probabilities(model_path: Path, rgb_images: np.ndarray) -> np.ndarray:
    """What `toolkit eval` predicts for the same images."""
    from training.evaluate import load_predictor

    return load_predictor(model_path).predict(rgb_images)


@pytest.fixture(scope="module")
def sample(sample_dataset):
    return sample_dataset.images[::5]  # 60 real images, 6 per class


def test_video_predictions_match_eval_without_tensorflow(edge_int8_model, sample, tmp_path):
    frames_bgr = [np.ascontiguousarray(image[:, :, ::-1]) for image in sample]
    video = write_lossless_video(tmp_path / "sample.mkv", frames_bgr)
    capture = cv2.VideoCapture(str(video))
    decoded = [capture.read()[1] for _ in range(len(frames_bgr))]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames_bgr)), "the test video is not lossless"

    saved = tmp_path / "annotated.mp4"
    result = run_without_tensorflow(
        ["classify", "--model", str(edge_int8_model), "--source", str(video), "--headless", "--top-k", "3",
         "--threads", "1", "--save", str(saved)]
    )
    assert result.returncode == 0, result.stderr
    records, summary = json_lines(result.stdout)
    assert [record["frame"] for record in records] == list(range(len(sample)))
    assert all({"time", "frame", "top_k", "inference_ms"} <= set(record) for record in records)

    expected = reference_probabilities(edge_int8_model, sample)
    labels = sorted(path.name for path in (REPO_ROOT / "tests/data/cifar10-sample").iterdir())
    for record, probabilities in zip(records, expected):
        order = np.argsort(-probabilities, kind="stable")[:3]
        assert [p["label"] for p in record["top_k"]] == [labels[i] for i in order]
        np.testing.assert_allclose([p["score"] for p in record["top_k"]], probabilities[order], atol=1e-5)
    assert len({record["top_k"][0]["label"] for record in records}) >= 3

    assert summary["frames"] == len(sample)
    assert summary["unreadable_frames"] == 0 and summary["dropped_frames"] == 0
    assert summary["mean_fps"] > 0 and 0 < summary["inference_ms_p50"] <= summary["inference_ms_p95"]
    assert summary["runtime"] in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")
    assert "summary:" in result.stderr

    written = cv2.VideoCapture(str(saved))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == len(sample)
    assert min(written.read()[1].shape[:2]) >= 240  # small frames are enlarged for the overlay


def test_images_folder_counts_unreadable_and_matches_eval(edge_int8_model, sample, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    # Camera-sized, non-square pictures: the app's crop and resize must match eval's.
    large = [cv2.resize(image, (131, 97)) for image in sample[:2]]
    for index, image in enumerate(large):
        cv2.imwrite(str(folder / f"{index}.png"), image[:, :, ::-1])
    (folder / "2.jpg").write_bytes(b"\xff\xd8 this is not a picture")
    result = run_without_tensorflow(
        ["classify", "--model", str(edge_int8_model), "--source", str(folder), "--headless", "--top-k", "1"]
    )
    assert result.returncode == 0, result.stderr
    records, summary = json_lines(result.stdout)
    assert summary["frames"] == 2 and summary["unreadable_frames"] == 1
    assert f"warning: skipped {folder / '2.jpg'}" in result.stderr  # named, so the user can fix it
    expected = reference_probabilities(edge_int8_model, np.stack(large))
    for record, probabilities in zip(records, expected):
        assert record["source"].endswith((".png",))
        assert record["top_k"][0]["index"] == int(np.argmax(probabilities))
        assert record["top_k"][0]["score"] == pytest.approx(float(np.max(probabilities)), abs=1e-5)


@pytest.mark.slow
def test_memory_stays_flat_over_thousands_of_frames(edge_int8_model, sample, tmp_path):
    frames = [np.ascontiguousarray(sample[index % len(sample)][:, :, ::-1]) for index in range(4000)]
    video = write_lossless_video(tmp_path / "long.mkv", frames)
    result = run_without_tensorflow(
        ["classify", "--model", str(edge_int8_model), "--source", str(video), "--headless", "--smoothing", "0.5"]
    )
    assert result.returncode == 0, result.stderr
    records, summary = json_lines(result.stdout)
    assert summary["frames"] == len(records) == 4000
    growth = summary["rss_mb_end"] - summary["rss_mb_after_warmup"]
    assert growth < 4.0, f"resident memory grew {growth:.1f} MiB over 3800 frames"


def test_threshold_drops_low_scores(edge_int8_model, sample, tmp_path):
    video = write_lossless_video(tmp_path / "short.mkv", [image[:, :, ::-1].copy() for image in sample[:10]])
    result = run_without_tensorflow(
        ["classify", "--model", str(edge_int8_model), "--source", str(video), "--headless", "--top-k", "5",
         "--threshold", "0.2"]
    )
    assert result.returncode == 0, result.stderr
    records, _ = json_lines(result.stdout)
    scores = [p["score"] for record in records for p in record["top_k"]]
    assert scores and min(scores) >= 0.2
    assert any(len(record["top_k"]) < 5 for record in records)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--source", "/dev/video99"], "camera /dev/video99 does not exist"),
        (["--source", "9"], "camera 9 could not be opened"),
        (["--source", "no/such/file.mp4"], "does not exist"),
        (["--edgetpu"], "_edgetpu.tflite"),
        (["--show"], "--show needs"),
        (["--serve", "localhost:notaport"], "--serve needs HOST:PORT"),
    ],
)
def test_faults_are_one_line_errors(edge_int8_model, sample_dir, arguments, message):
    source = [] if "--source" in arguments else ["--source", str(sample_dir / "cat" / "0000.jpg")]
    command = ["classify", "--model", str(edge_int8_model), *source, *arguments]
    result = run_without_tensorflow(command, env_display=None)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("loop", [[], ["--loop"]])
def test_nothing_readable_is_an_error_not_an_empty_success(edge_int8_model, tmp_path, loop):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a picture")
    command = ["classify", "--model", str(edge_int8_model), "--source", str(broken), "--headless", *loop]
    result = run_without_tensorflow(command)  # with --loop too: no endless replay of a file that never decodes
    assert result.returncode == 2
    assert result.stderr.count("warning: skipped") == 1
    assert result.stderr.splitlines()[-1] == f"error: no frame of image {broken} could be read (1 unreadable)"
    _, summary = json_lines(result.stdout)
    assert summary["frames"] == 0 and summary["unreadable_frames"] == 1  # the summary is still written


def test_video_without_frames_is_an_error(edge_int8_model, tmp_path):
    empty = tmp_path / "empty.avi"
    cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 64)).release()  # opens, holds no frame
    result = run_without_tensorflow(["classify", "--model", str(edge_int8_model), "--source", str(empty), "--headless"])
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"error: no frame of video {empty} could be read (it holds none)"


def test_edgetpu_delegate_missing_is_a_clear_error(edge_int8_model, tmp_path):
    compiled = tmp_path / "model_int8_edgetpu.tflite"
    shutil.copy(edge_int8_model, compiled)
    # edgetpu_compiler writes no card: the source model's card beside it serves the compiled model.
    shutil.copy(edge_int8_model.with_name("model_int8.card.json"), tmp_path / "model_int8.card.json")
    result = run_without_tensorflow(
        ["classify", "--model", str(compiled), "--source", str(REPO_ROOT / "tests/data/cifar10-sample/cat/0000.jpg"),
         "--edgetpu"]
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: Edge TPU delegate libedgetpu.so.1")
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_default_model_is_pretrained_or_a_clear_error(edge_int8_model, tmp_path, sample_dir):
    image = str(sample_dir / "cat" / "0000.jpg")
    if not (REPO_ROOT / "pretrained" / "model_int8.tflite").exists():
        result = run_without_tensorflow(["classify", "--source", image], cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1].startswith("error: no --model given")
        assert "pass --model" in result.stderr
    else:  # the shipped model, found from any directory (tests/test_pretrained_default.py covers the search)
        result = run_without_tensorflow(["classify", "--source", image, "--headless"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        _, summary = json_lines(result.stdout)
        assert summary["frames"] == 1 and summary["model"].endswith("pretrained/model_int8.tflite")


def test_smoothing_averages_the_probabilities_of_consecutive_frames():
    from types import SimpleNamespace

    from edge_app.app import ClassifyConfig, _top_predictions

    classifier = SimpleNamespace(labels=["cat", "dog"], probabilities=lambda output: output)
    config = ClassifyConfig(model="m.tflite", source="0", top_k=2, smoothing=0.5)
    predict = _top_predictions(classifier, config, source=SimpleNamespace())
    first = predict(np.array([[1.0, 0.0]], np.float32))
    second = predict(np.array([[0.0, 1.0]], np.float32))
    third = predict(np.array([[0.0, 1.0]], np.float32))
    assert [(p.label, p.score) for p in first] == [("cat", 1.0), ("dog", 0.0)]
    assert [p.score for p in second] == [0.5, 0.5]
    assert [(p.label, p.score) for p in third] == [("dog", 0.75), ("cat", 0.25)]
    unsmoothed = _top_predictions(classifier, ClassifyConfig(model="m.tflite", source="0", top_k=1), source=SimpleNamespace())
    unsmoothed(np.array([[1.0, 0.0]], np.float32))
    assert unsmoothed(np.array([[0.0, 1.0]], np.float32))[0].score == 1.0


@pytest.mark.slow
def test_edge_fps_benchmark_measures_app_and_raw_rates_without_tensorflow(edge_int8_model, tmp_path):
    arguments = ["--model", str(edge_int8_model), "--sizes", "64x48", "--threads", "1", "--frames", "40", "--repeats", "2",
                 "--out", str(tmp_path)]  # fmt: skip
    result = run_without_tensorflow(arguments, timeout=300, script=REPO_ROOT / "benchmarks" / "edge_fps.py")
    assert result.returncode == 0, result.stderr
    [row] = json.loads((tmp_path / "edge_fps.json").read_text())["rows"]
    assert (row["video"], row["threads"], row["frames"]) == ("64x48", 1, 40)
    assert len(row["raw_invoke_fps_runs"]) == len(row["app_fps_runs"]) == 2 and min(row["app_fps_runs"]) > 0
    assert row["ratio"] == pytest.approx(row["app_fps_median"] / row["raw_invoke_fps_median"], abs=1e-3)
    assert "| 64x48 |" in (tmp_path / "edge_fps.md").read_text()

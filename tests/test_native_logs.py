"""TensorFlow's native start-up lines stay off the terminal; everything else written there is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.native_logs import lines_to_show, quiet_native_logs

# What TensorFlow 2.20 printed here on import, on its first device query (CPU-only machine) and in an int8 conversion,
# and LiteRT when it allocated an interpreter.
STARTUP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795928943.123265    4457 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results.
I0000 00:00:1795928943.123593    4457 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1795928987.976128    4753 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other operations, rebuild TensorFlow.
E0000 00:00:1795928946.239592    4457 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
"""
CUINIT = "E0000 00:00:1795928946.239592    4457 cuda_platform.cc:52] failed call to cuInit: CUDA_ERROR_NO_DEVICE"


def test_startup_chatter_is_dropped_and_everything_else_kept() -> None:
    assert lines_to_show(STARTUP) == []
    news = [
        "W0000 00:00:1795928946.1    4457 some_op.cc:12] something the user should see",
        "F0000 00:00:1795928946.2    4457 check.cc:7] Check failed: x == y",
        "/site-packages/tensorflow/foo.py:3: DeprecationWarning: bar",
    ]
    assert lines_to_show(STARTUP + "\n".join(news)) == news
    # With a CUDA driver present, a failed cuInit is news: it stays.
    assert lines_to_show(CUINIT) == [CUINIT]


def test_block_holds_back_native_chatter_and_restores_descriptor_2(capfd, monkeypatch) -> None:
    monkeypatch.delenv("TOOLKIT_DEBUG", raising=False)
    with quiet_native_logs():
        os.write(2, STARTUP.encode())
        os.write(2, b"W0000 00:00:1.5    1 x.cc:1] kept\n")
    os.write(2, b"after the block\n")
    assert capfd.readouterr().err.splitlines() == ["W0000 00:00:1.5    1 x.cc:1] kept", "after the block"]

    monkeypatch.setenv("TOOLKIT_DEBUG", "1")
    with quiet_native_logs():
        os.write(2, STARTUP.encode())
    assert capfd.readouterr().err == STARTUP


def test_block_shows_what_was_written_before_an_exception(capfd, monkeypatch) -> None:
    monkeypatch.delenv("TOOLKIT_DEBUG", raising=False)
    try:
        with quiet_native_logs():
            os.write(2, b"a native complaint\n")
            raise ImportError("broken install")
    except ImportError:
        pass
    os.write(2, b"after\n")
    assert capfd.readouterr().err.splitlines() == ["a native complaint", "after"]


@pytest.mark.slow
def test_a_bad_model_is_one_line_on_the_terminal(tmp_path: Path) -> None:
    """The README's promise, at the file-descriptor level: TensorFlow loads, and stderr holds the error alone."""
    environment = {key: value for key, value in os.environ.items() if key != "TOOLKIT_DEBUG"}
    missing = tmp_path / "missing.keras"
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "convert", "--int8", "--model", str(missing), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=environment, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: model file {missing} does not exist"], result.stderr


def test_classify_shows_no_runtime_chatter(sample_dir: Path) -> None:
    image = sorted((sample_dir / "cat").glob("*.jpg"))[0]
    result = subprocess.run([sys.executable, "-m", "toolkit", "classify", "--source", str(image), "--headless"],
                            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"top_k"' in result.stdout and "XNNPACK" not in result.stderr, result.stderr

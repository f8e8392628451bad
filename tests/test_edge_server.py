"""`toolkit classify --serve`: the MJPEG stream and live top-k page, started and stopped like on a Pi."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.server import parse_address
from edge_support import popen_without_tensorflow, write_lossless_video
from toolkit.errors import ToolkitError
from toolkit.model_card import load_card

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def test_serve_address_defaults_to_loopback():
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address(":8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    with pytest.raises(ToolkitError):
        parse_address("localhost:http")


def read_one_mjpeg_frame(url: str) -> bytes:
    """The first JPEG part of a multipart/x-mixed-replace response."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        headers = b""
        while not headers.endswith(b"\r\n\r\n"):
            headers += response.read(1)
        length = int(re.search(rb"Content-Length: (\d+)", headers).group(1))
        assert b"Content-Type: image/jpeg" in headers
        return response.read(length)


@pytest.fixture()
def serving(edge_int8_model, sample_dir, tmp_path):
    """The app serving a looping video on a free loopback port; yields (process, base URL, stderr lines)."""
    frames = [cv2.imread(str(path)) for path in sorted((sample_dir / "horse").glob("*.jpg"))[:30]]
    video = write_lossless_video(tmp_path / "clip.mkv", frames)
    process = popen_without_tensorflow(
        ["classify", "--model", str(edge_int8_model), "--source", str(video), "--loop", "--serve", "127.0.0.1:0"]
    )
    lines: list[str] = []
    url_ready = threading.Event()

    def read_stderr():
        for line in process.stderr:
            lines.append(line)
            if line.startswith("serving on "):
                url_ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert url_ready.wait(60), "".join(lines)
        url = next(line for line in lines if line.startswith("serving on ")).split()[-1]
        assert url.startswith("http://127.0.0.1:")
        yield process, url, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=5)


def test_serve_page_stream_and_clean_stop(serving, edge_int8_model):
    process, url, lines = serving
    labels = load_card(edge_int8_model).labels

    page = urllib.request.urlopen(url, timeout=10).read().decode()
    assert 'src="stream.mjpg"' in page and 'id="top-k"' in page

    jpeg = read_one_mjpeg_frame(url + "stream.mjpg")
    assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and min(image.shape[:2]) >= 240

    latest = json.loads(urllib.request.urlopen(url + "predictions.json", timeout=10).read())
    assert latest["frame"] is not None and latest["top_k"] and latest["top_k"][0]["label"] in labels

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    time.sleep(0.2)
    summary = [line for line in lines if line.startswith("summary:")]
    assert summary and re.search(r"summary: \d+ frames", summary[0]), "".join(lines)
    assert "Traceback" not in "".join(lines)
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)  # the port is closed


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_page_shows_a_label_in_a_headless_browser(serving, edge_int8_model, tmp_path):
    _process, url, _lines = serving
    labels = load_card(edge_int8_model).labels
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=4000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90,
    )
    dom = result.stdout
    assert 'id="top-k"' in dom, result.stderr[-2000:]
    # Filled by the page's script from predictions.json: a frame number and labels with scores.
    assert re.search(r'id="frame">\d+<', dom), dom[-2000:]
    shown = re.findall(r'<li class="prediction">([^<]+) [\d.]+%</li>', dom)
    assert shown and all(label in labels for label in shown)

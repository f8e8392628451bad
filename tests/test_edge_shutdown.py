"""How a run ends when something goes wrong: a stalled source, a failing output, a reader that leaves.

Also the annotated video of a live source, which must play at the speed things happened.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app import outputs
from edge_app.app import ClassifyConfig, run_classify
from edge_app.frame_queue import FrameQueue
from edge_app.outputs import VideoSaver
from edge_app.server import PreviewServer, parse_address
from edge_app.sources import Frame, Source
from toolkit.errors import ToolkitError


class StallingCamera(Source):
    """A live source that delivers ``count`` frames, then blocks in a read that ignores ``stop`` (a hung driver)."""

    live = True

    def __init__(self, picture: np.ndarray, count: int) -> None:
        super().__init__("stalling camera")
        self.picture, self.count = picture, count
        self.released = threading.Event()
        self.closed = False

    def frames(self, stop: threading.Event):
        for index in range(self.count):
            yield Frame(index, self.picture.copy(), time.time())
            time.sleep(0.01)
        self.released.wait(30)  # the read never returns on its own

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def picture(sample_dir: Path) -> np.ndarray:
    return cv2.imread(str(sorted((sample_dir / "ship").glob("*.jpg"))[0]))


@pytest.mark.slow
def test_stop_is_not_held_up_by_a_stalled_read(edge_int8_model, picture, capsys):
    source = StallingCamera(picture, 5)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()  # what Ctrl-C or SIGTERM do
    started = time.monotonic()
    try:
        summary = run_classify(ClassifyConfig(model=str(edge_int8_model), source="camera", headless=True), source=source, stop=stop)
    finally:
        source.released.set()
    assert time.monotonic() - started < 5  # was: until the read returned (FFmpeg's 30 s timeout on a stalled stream)
    assert summary["frames"] == 5
    assert not source.closed  # a device a blocked read still uses is not released under it
    assert '"summary"' in capsys.readouterr().out.splitlines()[-1]


def test_a_failing_output_still_prints_the_summary_and_leaves_no_temporary_file(edge_int8_model, sample_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(outputs.FOURCC_BY_SUFFIX, ".mp4", "ZZZZ")  # an OpenCV build without this encoder
    saved = tmp_path / "out" / "annotated.mp4"
    config = ClassifyConfig(model=str(edge_int8_model), source=str(sample_dir / "cat"), headless=True, save=str(saved))
    with pytest.raises(ToolkitError, match=r"cannot write video .*annotated.mp4: OpenCV here has no ZZZZ encoder; try another of \.avi"):
        run_classify(config)
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].startswith("summary: ")
    assert json.loads(captured.out.splitlines()[-1])["summary"]["frames"] >= 1
    assert list(saved.parent.iterdir()) == []  # neither a half-written video nor its temporary file


class LeavingReader(io.StringIO):
    """A pipe whose reader takes the per-frame lines and leaves before the summary (``| head``)."""

    def write(self, text: str) -> int:
        if '"summary"' in text:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_reader_leaving_before_the_summary_is_not_an_error(edge_int8_model, sample_dir, capsys):
    stdout = LeavingReader()
    summary = run_classify(ClassifyConfig(model=str(edge_int8_model), source=str(sample_dir / "cat" / "0000.jpg"), headless=True), stdout=stdout)
    assert summary["frames"] == 1 and len(stdout.getvalue().splitlines()) == 1
    assert capsys.readouterr().err.startswith("summary: ")


def frames_in(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_live_video_is_saved_in_real_time(tmp_path, picture):
    saver = VideoSaver(tmp_path / "live.avi", fps=10.0, real_time=True)
    start = 1_800_000_000.0
    # 0 s, 0.05 s (faster than 10 FPS: skipped), 0.1 s, 0.5 s (slower: the picture is held), then a 60 s gap
    for seconds in (0.0, 0.05, 0.1, 0.5, 60.5, 60.6):
        saver.write(picture, start + seconds)
    saver.close()
    # 1 + 0 + 1 + 4 (0.2-0.5 s) + 10 (the gap: one second held) + 1
    assert saver.frames == 17 and frames_in(tmp_path / "live.avi") == 17

    file_saver = VideoSaver(tmp_path / "file.avi", fps=10.0)  # a video file: every frame once
    for seconds in (0.0, 0.05, 60.0):
        file_saver.write(picture, start + seconds)
    file_saver.close()
    assert frames_in(tmp_path / "file.avi") == 3


def test_serve_on_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    server = PreviewServer(*parse_address("[::1]:0")).start()
    try:
        assert server.url.startswith("http://[::1]:")
        with urllib.request.urlopen(server.url + "predictions.json", timeout=5) as response:
            assert json.loads(response.read())["top_k"] == []
    finally:
        server.stop()


def test_a_closed_live_queue_drops_nothing_more():
    queue = FrameQueue(1, drop_oldest=True)
    queue.put("last frame")
    queue.close()
    assert queue.put("late frame") is False
    assert queue.dropped == 0 and queue.get() == "last frame"

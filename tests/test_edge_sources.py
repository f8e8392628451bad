"""Frame sources and hand-over queues: newest-wins on live sources, reconnects, missing cameras, streams."""

from __future__ import annotations

import functools
import http.server
import itertools
import threading
import time

import numpy as np
import pytest

from edge_app.app import ClassifyConfig, run_classify
from edge_app.frame_queue import CLOSED, FrameQueue
from edge_app.sources import Backoff, CaptureSource, Frame, Source, open_source, parse_size
from edge_support import write_lossless_video
from toolkit.errors import ToolkitError


def test_live_queue_keeps_the_newest_and_counts_drops():
    queue = FrameQueue(2, drop_oldest=True)
    for item in range(5):
        assert queue.put(item)
    assert queue.dropped == 3
    queue.close()
    assert [queue.get(), queue.get(), queue.get()] == [3, 4, CLOSED]


def test_file_queue_keeps_every_frame_and_waits_for_room():
    queue = FrameQueue(2, drop_oldest=False)
    received: list[int] = []

    def consume():
        while (item := queue.get()) is not CLOSED:
            received.append(item)
            time.sleep(0.001)

    consumer = threading.Thread(target=consume)
    consumer.start()
    for item in range(50):
        assert queue.put(item)
    queue.close()
    consumer.join(timeout=5)
    assert received == list(range(50)) and queue.dropped == 0
    assert FrameQueue(1).put("late", timeout=0)  # an empty queue takes an item at once
    full = FrameQueue(1)
    full.put(1)
    assert full.put(2, timeout=0.01) is False  # a full file queue does not drop


class FakeCamera:
    """A camera that delivers ``count`` frames, then fails like an unplugged USB camera."""

    def __init__(self, first_value: int, count: int) -> None:
        self.values = list(range(first_value, first_value + count))
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return True

    def read(self):
        if self.values:
            return True, np.full((8, 8, 3), self.values.pop(0), np.uint8)
        return False, None

    def get(self, _property: int) -> float:
        return 30.0

    def set(self, _property: int, _value: float) -> bool:
        return True

    def release(self) -> None:
        self.released = True


class Unplugged(FakeCamera):
    def __init__(self) -> None:
        super().__init__(0, 0)

    def isOpened(self) -> bool:  # noqa: N802
        return False


def plug_sequence(*cameras):
    """An open_capture that returns these cameras in turn, then an unplugged one forever."""
    remaining = list(cameras)
    return lambda _target: remaining.pop(0) if remaining else Unplugged()


def test_camera_lost_mid_run_reconnects_with_backoff_and_carries_on(capsys):
    opened = plug_sequence(FakeCamera(0, 3), Unplugged(), Unplugged(), FakeCamera(3, 4))
    backoff = Backoff(first=0.01, longest=0.04, give_up_after=0.5)
    source = CaptureSource(0, "camera 0", live=True, backoff=backoff, open_capture=opened)
    values = []
    started = time.monotonic()
    with pytest.raises(ToolkitError, match="camera 0 was lost and did not come back within"):
        for frame in source.frames(threading.Event()):
            values.append(int(frame.image[0, 0, 0]))
    assert values == list(range(7))  # every frame before and after the loss
    assert source.reconnects == 1
    assert time.monotonic() - started >= 0.5  # it kept trying for the whole give-up window
    log = capsys.readouterr().err
    assert "reconnect attempt 3 in 0.04 s" in log and "camera 0 is back" in log
    assert list(zip(range(5), backoff.delays())) == [(0, 0.01), (1, 0.02), (2, 0.04), (3, 0.04), (4, 0.04)]


def test_stopping_interrupts_the_backoff_wait():
    source = CaptureSource(
        0, "camera 0", live=True, backoff=Backoff(first=30.0, give_up_after=0),
        open_capture=plug_sequence(FakeCamera(0, 1)),
    )
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert len(list(source.frames(stop))) == 1
    assert time.monotonic() - started < 5


def test_missing_camera_is_a_clear_error():
    with pytest.raises(ToolkitError, match=r"camera 0 could not be opened: is it connected"):
        CaptureSource(0, "camera 0", live=True, open_capture=lambda _target: Unplugged())
    with pytest.raises(ToolkitError, match="camera /dev/video77 does not exist"):
        open_source("/dev/video77")
    with pytest.raises(ToolkitError, match="size must look like 640x480"):
        parse_size("640*480")
    assert parse_size("320x240") == (320, 240)


class FakeVideo(FakeCamera):
    """A video file whose frames decode (True) or are damaged (False) as ``pattern`` says.

    Like OpenCV's FFmpeg backend, its frame position only moves when a read succeeds.
    """

    def __init__(self, pattern: list[bool]) -> None:
        super().__init__(0, 0)
        self.pattern = pattern
        self.cursor = 0  # the next frame in the file
        self.position = 0  # what CAP_PROP_POS_FRAMES reports

    def read(self):
        if self.cursor >= len(self.pattern):
            return False, None
        self.cursor += 1
        if not self.pattern[self.cursor - 1]:
            return False, None
        self.position += 1
        return True, np.full((8, 8, 3), self.cursor, np.uint8)

    def get(self, property_id: int) -> float:
        return {1: self.position, 5: 30.0, 7: len(self.pattern)}[property_id]  # POS_FRAMES, FPS, FRAME_COUNT

    def set(self, property_id: int, value: float) -> bool:
        if property_id == 1:
            self.cursor = self.position = int(value)
        return True


@pytest.mark.parametrize(
    ("pattern", "delivered"),
    [
        ([True, False, False, True, True], [True, False, False, True, True]),
        ([True, True, True, False, False], [True, True, True, False]),  # the last one looks like the end
        ([False] * 20, [False] * 8),  # 8 damaged in a row: the rest is given up on
        ([], []),
    ],
    ids=["damaged-middle", "damaged-end", "all-damaged", "empty"],
)
def test_video_counts_damaged_frames_and_loop_never_spins_on_nothing(pattern, delivered):
    def frames(loop: bool, limit: int) -> list[bool]:
        video = FakeVideo(pattern)
        source = CaptureSource("v.mp4", "video v.mp4", live=False, loop=loop, open_capture=lambda _target: video)
        return [frame.image is not None for frame in itertools.islice(source.frames(threading.Event()), limit)]

    assert frames(loop=False, limit=100) == delivered
    looped = frames(loop=True, limit=3 * len(pattern) + 1)
    if any(pattern):
        assert looped == (delivered * 4)[: 3 * len(pattern) + 1]
    else:
        assert looped == delivered  # nothing ever decodes: --loop ends instead of spinning


class BurstCamera(Source):
    """A live source that delivers frames faster than any model: some must be dropped."""

    live = True

    def __init__(self, count: int, broken_every: int = 0) -> None:
        super().__init__("burst camera")
        self.count = count
        self.broken_every = broken_every

    def frames(self, stop):
        rng = np.random.default_rng(0)
        for index in range(self.count):
            broken = self.broken_every and index % self.broken_every == 0
            image = None if broken else rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            yield Frame(index, image, time.time())


def test_live_pipeline_accounts_for_every_frame(edge_int8_model, capsys):
    source = BurstCamera(600, broken_every=50)
    config = ClassifyConfig(model=str(edge_int8_model), source="burst", headless=True, threads=1, queue_size=1)
    summary = run_classify(config, source=source)
    assert summary["unreadable_frames"] == 12
    assert summary["frames"] + summary["dropped_frames"] + summary["unreadable_frames"] == 600
    assert summary["frames"] >= 1
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == summary["frames"] + 1


def test_http_stream_source(edge_int8_model, sample_dir, tmp_path, capsys):
    import cv2

    frames = [cv2.imread(str(path)) for path in sorted((sample_dir / "ship").glob("*.jpg"))[:20]]
    write_lossless_video(tmp_path / "clip.mkv", frames)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mkv"
        config = ClassifyConfig(model=str(edge_int8_model), source=url, headless=True)
        source = open_source(url, backoff=Backoff(first=0.05, give_up_after=5))
        assert source.live
        # The clip ends, which looks like a lost stream: the source reconnects and carries on until stopped.
        stop = threading.Event()

        def stop_after_the_first_reconnect() -> None:
            deadline = time.monotonic() + 30
            while source.reconnects < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.2)  # frames of the reconnected stream
            stop.set()

        threading.Thread(target=stop_after_the_first_reconnect, daemon=True).start()
        summary = run_classify(config, source=source, stop=stop)
    finally:
        server.shutdown()
        server.server_close()
    lines = capsys.readouterr().out.strip().splitlines()
    assert '"summary"' in lines[-1] and len(lines) - 1 == summary["frames"] >= 1
    assert summary["reconnects"] >= 1


def test_video_decodes_on_the_requested_ffmpeg_threads(tmp_path):
    import cv2

    frames = [np.full((48, 64, 3), value, np.uint8) for value in (10, 120, 240)]
    video = write_lossless_video(tmp_path / "clip.mkv", frames)
    one = open_source(str(video), decode_threads=1)
    default = open_source(str(video))
    try:
        assert one.capture.get(cv2.CAP_PROP_N_THREADS) == 1
        assert default.capture.get(cv2.CAP_PROP_N_THREADS) != 1 or cv2.getNumberOfCPUs() == 1
        decoded = [frame.image for frame in one.frames(threading.Event())]
        assert [int(image[0, 0, 0]) for image in decoded] == [10, 120, 240]
    finally:
        one.close()
        default.close()
    with pytest.raises(ToolkitError, match="decode-threads"):
        run_classify(ClassifyConfig(model="unused.tflite", source=str(video), decode_threads=-1))


def test_threads_taking_every_core_are_warned_about(edge_int8_model, sample_dir, monkeypatch, capsys):
    import edge_app.app

    image = next(sample_dir.rglob("*.jpg"))
    monkeypatch.setattr(edge_app.app, "available_cores", lambda: 4)
    run_classify(ClassifyConfig(model=str(edge_int8_model), source=str(image), threads=4, headless=True))
    assert "warning: --threads 4 takes all 4 cores" in capsys.readouterr().err
    run_classify(ClassifyConfig(model=str(edge_int8_model), source=str(image), threads=3, headless=True))
    assert "warning" not in capsys.readouterr().err

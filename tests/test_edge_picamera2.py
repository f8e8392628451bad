"""``--source picamera2`` with a stand-in for the Picamera2 library (the real one needs a Raspberry Pi camera).

The stand-in answers the calls the source makes as Picamera2 does: ``Picamera2()`` raises
IndexError when no camera is attached, a "RGB888" array is B, G, R in memory, and a
camera that stops answering raises RuntimeError from ``capture_array``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.app import ClassifyConfig, run_classify
from edge_app.runtime import TFLitePredictor
from edge_app.sources import Backoff, Picamera2Source, open_source
from toolkit.errors import ToolkitError


class FakePicamera2:
    """One camera start; ``plan`` (shared by every instance) says how each start behaves.

    A plan entry is ``"absent"`` (the constructor raises, as Picamera2 does without a camera),
    ``"fails"`` (``start`` raises) or a list of BGR pictures delivered before the camera is lost.
    """

    plan: list = []
    instances: list["FakePicamera2"] = []
    frame_interval = 0.0  # seconds between frames (a real camera delivers about 30 a second)

    def __init__(self) -> None:
        self.behaviour = FakePicamera2.plan.pop(0) if FakePicamera2.plan else "absent"
        if self.behaviour == "absent":
            raise IndexError("list index out of range")
        FakePicamera2.instances.append(self)
        self.config: dict | None = None
        self.started = self.stopped = self.closed = False

    def create_video_configuration(self, main: dict) -> dict:
        return {"main": dict(main)}

    def configure(self, config: dict) -> None:
        self.config = config

    def start(self) -> None:
        if self.behaviour == "fails":
            raise RuntimeError("Failed to start camera: Device or resource busy")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert name == "main" and self.started and not self.closed
        if not self.behaviour:
            raise RuntimeError("Camera frontend has timed out!")
        time.sleep(self.frame_interval)
        width, height = self.config["main"]["size"]
        return cv2.resize(self.behaviour.pop(0), (width, height), interpolation=cv2.INTER_NEAREST)

    def stop(self) -> None:
        self.stopped = True

    def close(self) -> None:
        self.closed = True


@pytest.fixture()
def fake_picamera2(monkeypatch):
    FakePicamera2.plan, FakePicamera2.instances, FakePicamera2.frame_interval = [], [], 0.0
    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakePicamera2))
    return FakePicamera2


def sample_pictures(sample_dir: Path, count: int) -> list[np.ndarray]:
    paths = sorted(sample_dir.rglob("*.jpg"))[::29][:count]
    return [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths]


def test_camera_frames_are_classified_as_bgr_and_the_camera_is_released(fake_picamera2, edge_int8_model, sample_dir, capsys):
    pictures = sample_pictures(sample_dir, 8)
    fake_picamera2.plan = [[picture.copy() for picture in pictures * 10]]
    fake_picamera2.frame_interval = 0.01
    config = ClassifyConfig(model=str(edge_int8_model), source="picamera2", headless=True, capture_size="96x64", max_frames=12, top_k=3)
    summary = run_classify(config)
    camera = fake_picamera2.instances[0]
    assert camera.config == {"main": {"size": (96, 64), "format": "RGB888"}}
    assert camera.stopped and camera.closed  # the Pi camera is free for the next program
    assert summary["frames"] == 12

    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()][:-1]
    assert len(records) == 12
    predictor = TFLitePredictor(edge_int8_model)
    for record in records:  # a live camera may drop a frame: the frame index says which picture it was
        frame = cv2.resize(pictures[record["frame"] % 8], (96, 64), interpolation=cv2.INTER_NEAREST)
        expected = predictor.predict(frame[None, ..., ::-1].copy())[0]  # the same picture, told as RGB
        scores = [entry["score"] for entry in record["top_k"]]
        assert [entry["index"] for entry in record["top_k"]] == list(np.argsort(-expected, kind="stable")[:3])
        np.testing.assert_allclose(scores, np.sort(expected)[::-1][:3], atol=1e-5)


def test_camera_lost_mid_run_is_restarted_with_backoff(fake_picamera2, sample_dir, capsys):
    pictures = sample_pictures(sample_dir, 7)
    fake_picamera2.plan = [pictures[:3], "fails", pictures[3:]]  # then "absent" for good
    source = open_source("picamera2", backoff=Backoff(first=0.01, longest=0.04, give_up_after=0.4))
    received = []
    with pytest.raises(ToolkitError, match="picamera2 was lost and did not come back within"):
        for frame in source.frames(threading.Event()):
            assert frame.colour_order == "BGR"
            received.append(frame.image)
    assert len(received) == 7 and all(np.array_equal(image, cv2.resize(picture, (640, 480), interpolation=cv2.INTER_NEAREST)) for image, picture in zip(received, pictures))
    assert source.reconnects == 1
    assert all(camera.closed for camera in fake_picamera2.instances)  # every failed start released its camera
    log = capsys.readouterr().err
    assert "picamera2 lost; reconnect attempt 1" in log and "picamera2 is back after" in log


def test_stopping_ends_the_camera_run(fake_picamera2, sample_dir):
    fake_picamera2.plan = [sample_pictures(sample_dir, 2)]  # then lost, and no camera comes back
    source = Picamera2Source(backoff=Backoff(first=30.0, give_up_after=0))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert len(list(source.frames(stop))) == 2
    source.close()


def test_missing_library_or_camera_is_one_clear_line(fake_picamera2, monkeypatch):
    with pytest.raises(ToolkitError, match=r"the Raspberry Pi camera could not be started: list index out of range"):
        open_source("picamera2")  # the library is there, no camera is attached
    fake_picamera2.plan = ["fails"]
    with pytest.raises(ToolkitError, match="could not be started: Failed to start camera: Device or resource busy"):
        open_source("picamera2")
    assert fake_picamera2.instances[-1].closed
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(ToolkitError, match="needs Picamera2: sudo apt install python3-picamera2"):
        open_source("picamera2")

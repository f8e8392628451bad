"""`toolkit collect` and the capture control of `toolkit classify --serve`: centre crops saved as numbered JPEGs."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edge_app import app
from edge_app.collect import CollectConfig, run_collect
from edge_app.server import PreviewServer, is_loopback, token_matches
from edge_app.sources import open_source
from edge_support import run_without_tensorflow, write_lossless_video
from test_edge_server import read_one_mjpeg_frame
from toolkit.cli import main
from toolkit.errors import ToolkitError
from toolkit.preprocessing import center_crop

FRAME_COUNT = 20
JPEG_TOLERANCE = 3.0  # mean absolute difference of a quality-95 JPEG of flat colours; frames differ by 8 or more


def make_frame(index: int) -> np.ndarray:
    """64x48 BGR: a colour of its own, a marker off-centre, and bars that the centre crop leaves out."""
    frame = np.empty((48, 64, 3), np.uint8)
    frame[:] = (12 * index, 240 - 12 * index, 100)
    frame[8:16, 40:52] = (255, 255, 0)  # inside the crop, right of centre: a crop shifted sideways moves it
    frame[:, :8] = 255
    frame[:, 56:] = 0
    return frame


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [make_frame(index) for index in range(FRAME_COUNT)]


@pytest.fixture()
def video(frames, tmp_path) -> Path:
    return write_lossless_video(tmp_path / "clip.mkv", frames, fps=30.0)


def difference(image: np.ndarray, expected: np.ndarray) -> float:
    assert image.shape == expected.shape, (image.shape, expected.shape)
    return float(np.abs(image.astype(np.float32) - expected.astype(np.float32)).mean())


def assert_crops_of(paths: list[Path], frames: list[np.ndarray], indices: list[int]) -> None:
    """Each saved image is the centre crop of the frame of the same position in ``indices``, and of no other frame."""
    crops = [center_crop(frame, 1, 1) for frame in frames]
    for path, index in zip(paths, indices, strict=True):
        saved = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert saved.shape == (48, 48, 3), path
        errors = [difference(saved, crop) for crop in crops]
        assert errors[index] < JPEG_TOLERANCE and int(np.argmin(errors)) == index, (path, index, errors[:4])


def numbered(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def collect(video: Path, root: Path, label: str, *flags: str):
    return run_without_tensorflow(["collect", "--source", str(video), "--label", label, "--out", str(root), *flags])


def test_collect_saves_centre_crops_numbered_after_existing_files(video, frames, tmp_path):
    root = tmp_path / "dataset"
    first = collect(video, root, "cat", "--count", "5", "--every", "0")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == f"saved 5 images to {root / 'cat'}"
    assert first.stderr.splitlines() == [f"saved {root / 'cat' / f'{number:04d}.jpg'} ({number + 1})" for number in range(5)]
    before = {path.name: path.read_bytes() for path in numbered(root / "cat")}
    assert sorted(before) == [f"{number:04d}.jpg" for number in range(5)]
    assert_crops_of(numbered(root / "cat"), frames, [0, 1, 2, 3, 4])

    second = collect(video, root, "cat", "--count", "3", "--every", "0")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == f"saved 3 images to {root / 'cat'}"
    paths = numbered(root / "cat")
    assert [path.name for path in paths] == [f"{number:04d}.jpg" for number in range(8)]
    assert all(path.read_bytes() == before[path.name] for path in paths[:5])  # never overwritten
    assert_crops_of(paths[5:], frames, [0, 1, 2])
    assert sorted(path.name for path in (root / "cat").iterdir()) == [path.name for path in paths]  # no temporary files
    assert "Traceback" not in first.stderr + second.stderr


def test_collect_every_counts_video_time_until_the_source_ends(video, frames, tmp_path):
    result = collect(video, tmp_path / "dataset", "dog")  # default --every 0.5 on a 30 FPS video of 20 frames
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"saved 2 images to {tmp_path / 'dataset' / 'dog'}"
    assert_crops_of(numbered(tmp_path / "dataset" / "dog"), frames, [0, 15])


@pytest.mark.parametrize(
    "label, flags, message",
    [
        ("", [], "the label is empty"),
        ("   ", [], "the label is empty"),
        ("cats/dogs", [], "path separator"),
        ("../cats", [], "path separator"),
        ("..", [], "starts with a dot"),
        ("cat", ["--count", "0"], "--count must be at least 1"),
        ("cat", ["--every", "-1"], "--every must be 0 or more"),
    ],
)
def test_bad_label_or_flag_is_one_line_error(video, tmp_path, label, flags, message, capsys):
    code = main(["collect", "--source", str(video), "--label", label, "--out", str(tmp_path / "dataset"), *flags])
    result = capsys.readouterr()
    assert code == 2
    assert result.err.startswith("error: ") and message in result.err and len(result.err.splitlines()) == 1
    assert result.out == "" and not (tmp_path / "dataset").exists()


def test_unknown_source_and_unwritable_out_are_one_line_errors(video, tmp_path):
    unknown = collect(tmp_path / "missing.mp4", tmp_path / "dataset", "cat")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: source ")
    assert len(unknown.stderr.splitlines()) == 1 and not (tmp_path / "dataset").exists()

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    unwritable = collect(video, a_file / "dataset", "cat")
    assert unwritable.returncode == 2 and unwritable.stderr.startswith("error: cannot write images to ")
    assert len(unwritable.stderr.splitlines()) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_count_updates_one_line_on_a_terminal(video, tmp_path):
    stderr, stdout = _Terminal(), io.StringIO()
    config = CollectConfig(source=str(video), label="cat", out=str(tmp_path / "dataset"), count=4, every=0.0)
    assert run_collect(config, stdout=stdout, stderr=stderr) == 4
    assert stderr.getvalue().count("\r") == 4 and stderr.getvalue().endswith(" 4 saved (Ctrl-C stops)\n")
    assert stderr.getvalue().count("\n") == 1
    assert stdout.getvalue() == f"saved 4 images to {tmp_path / 'dataset' / 'cat'}\n"


# --- the capture control of `toolkit classify --serve` ---


def request(url: str, label: str | None = None, cookie: str | None = None,
            content_type: str = "application/json") -> tuple[int, bytes, str | None]:
    """(status, body, Set-Cookie) of a GET, or of a capture POST when ``label`` is given."""
    data = json.dumps({"label": label}).encode() if label is not None else None
    headers = {"Content-Type": content_type} if data is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=10) as response:
            return response.status, response.read(), response.headers.get("Set-Cookie")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), None


def published_server(host: str, collect_to: Path | None, frame: np.ndarray) -> PreviewServer:
    """A started server whose latest frame is ``frame`` (and a grey annotated picture the capture must not save)."""
    server = PreviewServer(host, 0, collect_to=collect_to).start()
    annotated = np.full((240, 320, 3), 128, np.uint8)
    server.publish(annotated, {"frame": 0, "top_k": [], "fps": 0.0, "inference_ms": 0.0}, frame, "BGR")
    return server


def test_capture_saves_the_camera_frame_into_the_label_folder(frames, tmp_path):
    server = PreviewServer("127.0.0.1", 0, collect_to=tmp_path / "captured").start()
    try:
        assert server.token is None and server.page_url == server.url
        assert request(server.url + "capture", "cat")[0] == 503  # no frame yet
        assert 'id="capture"' in request(server.url)[1].decode()
        server.publish(np.full((240, 320, 3), 128, np.uint8), {"frame": 7, "top_k": []}, frames[7], "BGR")
        for number in range(2):
            status, body, _ = request(server.url + "capture", " cat ")
            assert status == 200 and json.loads(body)["saved"] == f"cat/{number:04d}.jpg"
        assert request(server.url + "capture", "cats/dogs")[0] == 400
        assert request(server.url + "capture", "cat", content_type="application/x-www-form-urlencoded")[0] == 415
    finally:
        server.stop()
    assert sorted(path.name for path in (tmp_path / "captured").iterdir()) == ["cat"]
    assert_crops_of(numbered(tmp_path / "captured" / "cat"), frames, [7, 7])


def test_capture_is_off_without_collect_to(frames, tmp_path):
    server = published_server("127.0.0.1", None, frames[0])
    try:
        assert request(server.url + "capture", "cat")[0] == 404
        page = request(server.url)[1].decode()
        assert 'src="stream.mjpg"' in page and 'id="capture"' not in page
    finally:
        server.stop()


@pytest.fixture()
def open_server(frames, tmp_path):
    """A server bound to every IPv4 address (not loopback), with capture on; reached through 127.0.0.1."""
    try:
        server = published_server("0.0.0.0", tmp_path / "captured", frames[3])
    except ToolkitError as error:
        pytest.skip(f"cannot bind 0.0.0.0 here: {error}")
    try:
        yield server, f"http://127.0.0.1:{server.address[1]}/"
    finally:
        server.stop()


def test_a_server_off_loopback_answers_403_without_the_token(open_server, tmp_path):
    server, url = open_server
    assert server.token and len(server.token) >= 32 and server.page_url.endswith(f"/?token={server.token}")
    for path in ("", "index.html", "predictions.json", "frame.jpg", "stream.mjpg"):
        for query in ("", "?token=wrong", f"?token={server.token[:-1]}"):
            assert request(url + path + query)[0] == 403, path + query
    assert request(url + "capture", "cat")[0] == 403
    assert request(url + "capture?token=wrong", "cat", cookie=f"{server.cookie_name}=wrong")[0] == 403
    assert not (tmp_path / "captured" / "cat").exists()


def test_the_token_in_the_url_or_its_cookie_lets_in(open_server, frames, tmp_path):
    server, url = open_server
    status, page, set_cookie = request(url + f"?token={server.token}")
    assert status == 200 and f'src="stream.mjpg?token={server.token}"' in page.decode()
    assert set_cookie.startswith(f"{server.cookie_name}={server.token};") and "HttpOnly" in set_cookie
    cookie = set_cookie.split(";", 1)[0]
    assert request(url + "predictions.json", cookie=cookie)[0] == 200
    jpeg = read_one_mjpeg_frame(url + f"stream.mjpg?token={server.token}")
    assert jpeg[:2] == b"\xff\xd8"
    status, body, _ = request(url + "capture", "cat", cookie=cookie)
    assert status == 200 and json.loads(body)["saved"] == "cat/0000.jpg"
    assert_crops_of(numbered(tmp_path / "captured" / "cat"), frames, [3])


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("::", False), ("192.168.1.20", False), ("raspberrypi.local", False)],
)  # fmt: skip
def test_only_loopback_goes_without_a_token(host, loopback):
    assert is_loopback(host) is loopback


def test_token_matches():
    assert token_matches(None, None) and token_matches(None, "anything")
    assert token_matches("secret", "secret")
    assert not token_matches("secret", None) and not token_matches("secret", "") and not token_matches("secret", "secreT")


class _FakePredictor:
    """Stands in for the LiteRT predictor: the test is about frames reaching the capture, not the model."""

    labels = ["cat", "dog"]
    card = SimpleNamespace(input_size=[32, 24, 3])  # 4:3 portrait: neither the square crop nor the whole 3:4 frame

    def __init__(self, *args, **kwargs) -> None:
        pass

    def prepare(self, images: np.ndarray, colour_order: str) -> np.ndarray:
        return np.zeros((1, 32, 32, 3), np.int8)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return np.array([[0.75, 0.25]], np.float32)

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        return output


def test_classify_serves_the_capture_of_the_unannotated_frame(video, frames, tmp_path, monkeypatch):
    servers: list[PreviewServer] = []

    class RecordedServer(PreviewServer):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            servers.append(self)

    monkeypatch.setattr(app, "TFLitePredictor", _FakePredictor)
    monkeypatch.setattr(app, "runtime_module", lambda: ("fake", None))
    monkeypatch.setattr(app, "PreviewServer", RecordedServer)
    config = app.ClassifyConfig(model="fake.tflite", source=str(video), serve="127.0.0.1:0", collect_to=str(tmp_path / "captured"))
    stop = threading.Event()
    run = threading.Thread(
        target=app.run_classify, args=(config, open_source(str(video), loop=True), stop, io.StringIO()), daemon=True
    )
    run.start()
    try:
        deadline, status = time.monotonic() + 30, None
        while status != 200 and time.monotonic() < deadline:
            status = request(servers[0].url + "capture", "cat")[0] if servers else None
            time.sleep(0.05)
        assert status == 200
    finally:
        stop.set()
        run.join(timeout=20)
    saved = cv2.imread(str(tmp_path / "captured" / "cat" / "0000.jpg"))
    assert saved.shape == (48, 36, 3)  # the camera frame cropped to the model's 4:3 portrait, not the annotated picture
    assert min(difference(saved, center_crop(frame, 32, 24)) for frame in frames) < JPEG_TOLERANCE


def test_collect_to_needs_serve(video, tmp_path):
    config = app.ClassifyConfig(model="fake.tflite", source=str(video), collect_to=str(tmp_path / "captured"))
    with pytest.raises(ToolkitError, match="--collect-to needs --serve"):
        app.run_classify(config)

"""Frame sources: camera, video file, image, image folder, network stream and Picamera2.

``open_source(spec)`` turns the ``--source`` string into one of these; each yields :class:`Frame` objects
from ``frames(stop)``. A frame whose ``image`` is None could not be read (skipped and counted); live sources
(cameras and streams) reconnect with back-off when the device goes away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from toolkit.errors import ToolkitError, first_line
from toolkit.preprocessing import IMAGE_SUFFIXES

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def _cv2():
    import cv2

    # OpenCV's own warnings ("can't open camera by index") would print before our one-line error.
    # Debian's OpenCV 4.6 (32-bit Raspberry Pi OS from apt) has no cv2.utils.logging.
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    return cv2


@dataclasses.dataclass
class Frame:
    """One captured picture and where it came from."""

    index: int  # position in the source, unreadable frames included
    image: np.ndarray | None  # uint8 H x W x C in ``colour_order``; None when it could not be read
    captured_at: float  # time.time() when it was read
    colour_order: str = "BGR"  # OpenCV gives BGR; Picamera2's "RGB888" is BGR in memory too
    name: str = ""  # file name for image and folder sources


@dataclasses.dataclass
class Backoff:
    """Reconnect delays for live sources: ``first``, doubling up to ``longest``, for ``give_up_after`` seconds."""

    first: float = 0.5  # seconds before the first reconnect attempt
    longest: float = 8.0  # cap on the delay between attempts
    give_up_after: float = 60.0  # total seconds without a frame before the run stops with an error; 0 = never

    def delays(self) -> Iterator[float]:
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2.0, self.longest)


class Source:
    """Base class: a named, possibly live, sequence of frames."""

    live = False  # a live source drops stale frames (newest wins); a file keeps every frame
    fps = 30.0  # frame rate used when saving an annotated video
    reconnects = 0  # times a live source came back after being lost

    def __init__(self, description: str, backoff: Backoff | None = None) -> None:
        self.description = description
        self.backoff = backoff or Backoff()  # reconnect delays of a live source

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """Every frame until the source ends or ``stop`` is set; an empty or missing picture has ``image`` None."""
        for index, image in enumerate(self._images(stop)):
            yield Frame(index, image if image is not None and image.size else None, time.time())

    def _images(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        raise NotImplementedError

    def nothing_read(self, unreadable: int) -> ToolkitError:
        """The error for a source that gave no frame, ``unreadable`` of them undecodable."""
        return ToolkitError(f"no frame of {self.description} could be read ({f'{unreadable} unreadable' if unreadable else 'it holds none'})")

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def reconnect(self, stop: threading.Event, reopen: Callable[[], bool]) -> None:
        """Close the lost device and ``reopen()`` it with back-off until it answers True or ``stop`` is set; raises when
        the device stays away longer than ``backoff.give_up_after`` seconds."""
        self.close()
        lost_at = time.monotonic()
        for attempt, delay in enumerate(self.backoff.delays(), start=1):
            give_up_after = self.backoff.give_up_after
            if give_up_after and time.monotonic() - lost_at >= give_up_after:
                raise ToolkitError(f"{self.description} was lost and did not come back within {give_up_after:.0f} s")
            _log(f"{self.description} lost; reconnect attempt {attempt} in {delay:g} s")
            if stop.wait(delay):
                return
            if reopen():
                self.reconnects += 1
                _log(f"{self.description} is back after {time.monotonic() - lost_at:.1f} s")
                return


def _log(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _video_capture(target: int | str, decode_threads: int = 0) -> Any:
    """``cv2.VideoCapture(target)``; files and streams with ``decode_threads`` FFmpeg decoder threads (0: FFmpeg's choice).

    FFmpeg's default, a thread per core, costs more CPU in all (0.22 against 0.10 ms for a 320x240 mp4v frame)
    and takes the interpreter's cores: the edge app asks for one, so decoding stays in the capture thread.
    """
    cv2 = _cv2()
    if decode_threads > 0 and isinstance(target, str) and not target.startswith("/dev/video"):
        capture = cv2.VideoCapture(target, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, decode_threads])
        if capture.isOpened():
            return capture
        capture.release()  # not something FFmpeg opens: let OpenCV pick a backend
    return cv2.VideoCapture(target)


_OPEN_HINTS = {  # what to check when a capture source of each kind does not open
    "camera": "is it connected, enabled and free (ls /dev/video* lists cameras; another program may hold it)?",
    "stream": "check the URL, the network and that it is streaming",
    "video": "not a video file or a codec OpenCV here cannot decode",
}


class CaptureSource(Source):
    """A ``cv2.VideoCapture`` camera index, /dev/videoN, video or stream URL (tests pass a fake ``open_capture``)."""

    def __init__(self, target: int | str, description: str, live: bool, loop: bool = False,
                 capture_size: tuple[int, int] | None = None, backoff: Backoff | None = None,
                 open_capture: Callable[[int | str], Any] | None = None, decode_threads: int = 0) -> None:
        super().__init__(description, backoff)
        self.target = target
        self.live = live
        self.loop = loop
        self.capture_size = capture_size
        self._open_capture = open_capture or (lambda target: _video_capture(target, decode_threads))
        if not self._open():
            kind = "camera" if isinstance(target, int) or str(target).startswith("/dev/video") else "stream" if live else "video"
            raise ToolkitError(f"{description} could not be opened: {_OPEN_HINTS[kind]}")
        fps = float(self.capture.get(5) or 0.0)  # cv2.CAP_PROP_FPS
        self.fps = fps if 1.0 <= fps <= 240.0 else 30.0
        self.frame_count = int(self.capture.get(7) or 0) if not live else 0  # cv2.CAP_PROP_FRAME_COUNT

    def _open(self) -> bool:
        """(Re)open ``self.capture``; whether it opened."""
        self.capture = self._open_capture(self.target)
        if not self.capture.isOpened():
            self.close()
            return False
        if self.capture_size is not None:
            self.capture.set(3, self.capture_size[0])  # cv2.CAP_PROP_FRAME_WIDTH
            self.capture.set(4, self.capture_size[1])  # cv2.CAP_PROP_FRAME_HEIGHT
        return True

    def _images(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        # A video file: OpenCV's frame position does not move on a failed read, so a damaged frame
        # is told from the end of the file by position + damaged frames so far < frame count - 1
        # (the container's count may be one too many). Failed reads wait in ``pending`` until a
        # later read succeeds or the file ends; either way they are counted, not dropped.
        pending = 0
        damaged = 0  # damaged frames passed since the file (re)started
        decoded = False  # a frame decoded since the file (re)started: only then may --loop replay it
        while not stop.is_set():
            ok, image = self.capture.read() if self.capture is not None else (False, None)
            if ok:  # a picture, or an empty one (an unreadable frame)
                if image is not None and image.size:
                    yield from [None] * pending
                    damaged, pending, decoded = damaged + pending, 0, True
                yield image
                continue
            if self.live:
                self.reconnect(stop, self._open)
                continue
            position = int(self.capture.get(1) or 0)  # cv2.CAP_PROP_POS_FRAMES
            if self.frame_count and position + damaged + pending < self.frame_count - 1 and pending < 8:
                pending += 1  # a damaged frame before the end: try the next one (8 in a row: give up)
                continue
            yield from [None] * pending
            pending, damaged = 0, 0
            if not (self.loop and decoded):
                return
            self.capture.set(1, 0)
            decoded = False

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class ImageFilesSource(Source):
    """One image or every image under a folder (sorted, recursive); unreadable files are counted."""

    fps = 2.0

    def __init__(self, paths: list[Path], description: str, loop: bool = False) -> None:
        super().__init__(description)
        self.paths = paths
        self.loop = loop

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        cv2 = _cv2()
        index = 0
        while True:
            readable = 0
            for path in self.paths:
                if stop.is_set():
                    return
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                image = image if image is not None and image.size else None
                readable += image is not None
                yield Frame(index, image, time.time(), name=str(path))
                index += 1
            if not self.loop or not readable:  # looping over files none of which can be read would never end
                return


_CAMERA_ERRORS = (RuntimeError, IndexError, OSError)  # what Picamera2 and libcamera raise for a missing or failed camera


class Picamera2Source(Source):
    """The Raspberry Pi camera through Picamera2 (imported only when asked for); restarted with back-off when it fails."""

    live = True

    def __init__(self, capture_size: tuple[int, int] | None = None, backoff: Backoff | None = None) -> None:
        super().__init__("picamera2", backoff)
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ToolkitError(
                "--source picamera2 needs Picamera2: sudo apt install python3-picamera2 "
                "(and create the virtual environment with --system-site-packages)"
            ) from None
        except ValueError as error:  # "numpy.dtype size changed": apt's simplejpeg was built for numpy 1
            raise ToolkitError(
                f"Picamera2 could not be imported ({first_line(error)}): apt's simplejpeg does not match "
                "the numpy in this environment; run pip install --force-reinstall simplejpeg"
            ) from None
        self._create_camera = Picamera2
        self.size = capture_size or (640, 480)
        self.camera: Any = None
        if (error := self._start()) is not None:
            raise ToolkitError(f"the Raspberry Pi camera could not be started: {error}")

    def _start(self) -> Exception | None:
        """Create, configure and start the camera; the error, with the camera released, when that fails."""
        try:
            self.camera = self._create_camera()
            # "RGB888" is stored B, G, R in memory: the same order as an OpenCV frame.
            self.camera.configure(self.camera.create_video_configuration(main={"size": self.size, "format": "RGB888"}))
            self.camera.start()
        except _CAMERA_ERRORS as error:
            self.close()
            return error
        return None

    def _images(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        while not stop.is_set():
            try:
                image = self.camera.capture_array("main")
            except _CAMERA_ERRORS:
                self.reconnect(stop, lambda: self._start() is None)
                continue
            yield image

    def close(self) -> None:
        camera, self.camera = self.camera, None
        if camera is not None:
            for release in (camera.stop, camera.close):
                with contextlib.suppress(*_CAMERA_ERRORS):  # a camera already gone cannot be stopped: released all the same
                    release()


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ToolkitError(f"size must look like 640x480, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def open_source(spec: str, loop: bool = False, capture_size: tuple[int, int] | None = None,
                backoff: Backoff | None = None, decode_threads: int = 0) -> Source:
    """The source ``--source spec`` names: camera index, /dev/videoN, URL, picamera2, image, folder or video."""
    spec = spec.strip()
    if spec == "picamera2":
        return Picamera2Source(capture_size, backoff)
    if spec.startswith("/dev/video") and not Path(spec).exists():
        raise ToolkitError(f"camera {spec} does not exist (ls /dev/video* lists cameras; is it connected and enabled?)")
    if spec.isdigit() or spec.startswith("/dev/video"):
        target = int(spec) if spec.isdigit() else spec
        return CaptureSource(target, f"camera {spec}", live=True, capture_size=capture_size, backoff=backoff)
    if spec.lower().startswith(STREAM_SCHEMES):
        return CaptureSource(spec, f"stream {spec}", live=True, backoff=backoff, decode_threads=decode_threads)
    path = Path(spec)
    if path.is_dir():
        paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ToolkitError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFilesSource(paths, f"folder {path}", loop=loop)
    if not path.exists():
        raise ToolkitError(
            f"source {spec} does not exist: give a camera index, /dev/videoN, a video, an image, a folder, "
            "an rtsp:// or http:// URL, or picamera2"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource([path], f"image {path}", loop=loop)
    return CaptureSource(str(path), f"video {path}", live=False, loop=loop, decode_threads=decode_threads)

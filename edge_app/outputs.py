"""Where results go besides stdout: an OpenCV window, an annotated video file."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from toolkit import atomic
from toolkit.errors import ToolkitError

GUI_HINT = (
    "OpenCV here has no GUI support (opencv-python-headless): "
    "pip uninstall -y opencv-python-headless && pip install opencv-python, or use --serve / --save"
)


class Window:
    """An OpenCV window; pressing q or Esc asks the run to stop."""

    name = "toolkit classify"

    def __init__(self) -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ToolkitError(
                "--show needs a display (DISPLAY is not set): use --serve 127.0.0.1:8080 or --save out.mp4 instead"
            )
        import cv2

        gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
        if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
            raise ToolkitError(GUI_HINT)
        try:
            cv2.namedWindow(self.name, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise ToolkitError(GUI_HINT) from None

    def show(self, frame: np.ndarray) -> bool:
        """Display ``frame``; False when the user asked to quit."""
        import cv2

        cv2.imshow(self.name, frame)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        import cv2

        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.name)


FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "FFV1"}


class VideoSaver:
    """Writes annotated frames to a video; the file appears (atomically) when the run ends.

    With ``real_time`` (a camera or a stream) each frame fills the slots at ``fps`` since the one before, by capture
    time (repeated while the app is slower than ``fps``, skipped while faster; a gap over a second is shortened to
    one), so the video plays at the speed things happened. Without it every frame is written once.
    """

    def __init__(self, path: str | os.PathLike, fps: float, real_time: bool = False) -> None:
        self.path = Path(path)
        self.fourcc = FOURCC_BY_SUFFIX.get(self.path.suffix.lower())
        if self.fourcc is None:
            raise ToolkitError(f"--save needs one of {', '.join(FOURCC_BY_SUFFIX)}, got {self.path.name}")
        self.fps = fps
        self.real_time = real_time
        self._file: contextlib.ExitStack | None = None  # the temporary file, moved into place on close()
        self._writer: Any = None
        self._size: tuple[int, int] | None = None
        self._first_capture: float | None = None
        self.frames = 0  # frames in the file

    def _copies(self, captured_at: float) -> int:
        """How many times to write a frame captured at ``captured_at`` (seconds) to keep real time."""
        if not self.real_time:
            return 1
        if self._first_capture is None:
            self._first_capture = captured_at
        slot = int((captured_at - self._first_capture) * self.fps + 1e-6)  # + 1e-6: time.time()'s rounding
        copies = slot + 1 - self.frames
        if copies > self.fps:  # a long gap (a reconnect): one second of it, then time goes on from here
            copies = max(1, int(self.fps))
            self._first_capture = captured_at - (self.frames + copies - 1) / self.fps
        return max(copies, 0)

    def write(self, frame: np.ndarray, captured_at: float) -> None:
        """Add ``frame`` (BGR), captured at ``captured_at`` (``time.time()``; used with ``real_time``)."""
        import cv2

        copies = self._copies(captured_at)
        if copies == 0:
            return
        height, width = frame.shape[:2]
        if self._writer is None:
            self._open(width, height)
        if (width, height) != self._size:  # a camera that changed resolution after a reconnect
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        for _ in range(copies):
            self._writer.write(frame)
        self.frames += copies

    def _open(self, width: int, height: int) -> None:
        """Start the video at ``width`` x ``height`` in a temporary file; a one-line error without the encoder."""
        import cv2

        with contextlib.ExitStack() as stack:  # an error discards the temporary file
            temporary = stack.enter_context(atomic.atomic_path(self.path))
            writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
            if not writer.isOpened():
                others = ", ".join(sorted(set(FOURCC_BY_SUFFIX) - {self.path.suffix.lower()}))
                raise ToolkitError(f"cannot write video {self.path}: OpenCV here has no {self.fourcc} encoder; "
                                   f"try another of {others}")
            self._file = stack.pop_all()
        self._writer = writer
        self._size = (width, height)

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._file.close()

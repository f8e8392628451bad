"""Collect training images: frames centre-cropped as the model sees them, saved as numbered JPEGs.

``toolkit collect`` and the capture control of ``toolkit classify --serve`` both save through
:class:`ClassFolder`, so both crop, number and write alike:

    ROOT/<label>/0000.jpg, 0001.jpg, ...   (numbering continues after the files already there)

The crop is :func:`toolkit.preprocessing.center_crop_square`, the crop the model's
preprocessing takes before it resizes to the input size; the crop is kept at its native
resolution. Each file is written to a hidden temporary file and renamed, so an interrupted
run leaves whole images only (and the training loader skips hidden files).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
import threading
from pathlib import Path
from typing import TextIO

import numpy as np

from edge_app.signals import stop_on_signals
from edge_app.sources import Frame, Source, open_source
from toolkit.atomic import atomic_path
from toolkit.errors import ToolkitError
from toolkit.preprocessing import center_crop_square, convert_colour

JPEG_QUALITY = 95
_NUMBERED_NAME = re.compile(r"\d+")


def check_label(label: str) -> str:
    """The class name ``label`` with surrounding spaces removed; a one-line error when it cannot be a folder name."""
    name = label.strip()
    if not name:
        raise ToolkitError("the label is empty: give the class name, e.g. --label cat")
    if "/" in name or "\\" in name or "\0" in name:
        raise ToolkitError(f"the label {label!r} holds a path separator: give a plain class name, e.g. cat")
    if name.startswith("."):
        raise ToolkitError(f"the label {label!r} starts with a dot: training skips such hidden folders")
    return name


def model_view(image: np.ndarray, colour_order: str = "BGR") -> np.ndarray:
    """The centred square the model's preprocessing crops from ``image``, as BGR for OpenCV, at native resolution."""
    crop = center_crop_square(image)
    return crop if colour_order == "BGR" else convert_colour(crop, colour_order, "BGR")


def encode_jpeg(image_bgr: np.ndarray) -> bytes:
    """``image_bgr`` as JPEG bytes (quality :data:`JPEG_QUALITY`)."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ToolkitError(f"OpenCV could not encode a {image_bgr.shape} frame as JPEG")
    return encoded.tobytes()


def writable_folder(path: str | os.PathLike) -> Path:
    """``path`` as a folder this process may write into, created when missing; a one-line error otherwise."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ToolkitError(f"cannot write images to {folder}: {error.strerror or error}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ToolkitError(f"cannot write images to {folder}: permission denied")
    return folder


def _next_number(folder: Path) -> int:
    """One more than the highest number among the file names in ``folder`` (0 when there is none)."""
    numbers = [int(path.stem) for path in folder.iterdir() if _NUMBERED_NAME.fullmatch(path.stem)]
    return max(numbers, default=-1) + 1


class ClassFolder:
    """``root/label/``: saves frames as the next numbered JPEGs, never over an existing file; thread-safe."""

    def __init__(self, root: str | os.PathLike, label: str) -> None:
        self.label = check_label(label)
        self.path = writable_folder(Path(root) / self.label)
        self._number = _next_number(self.path)
        self._lock = threading.Lock()
        self.saved = 0

    def save(self, image: np.ndarray, colour_order: str = "BGR") -> Path:
        """Save the model's view of ``image`` as the next number; returns the file written."""
        data = encode_jpeg(model_view(image, colour_order))
        with self._lock:
            while (target := self.path / f"{self._number:04d}.jpg").exists():  # another writer took the name
                self._number += 1
            try:
                with atomic_path(target) as temporary:
                    temporary.write_bytes(data)
            except OSError as error:
                raise ToolkitError(f"cannot write {target}: {error.strerror or error}") from None
            self._number += 1
            self.saved += 1
        return target


class CaptureFolders:
    """The class folders under one root, opened when a label is first used (the ``--serve`` capture control)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = writable_folder(root)
        self._folders: dict[str, ClassFolder] = {}
        self._lock = threading.Lock()

    def save(self, label: str, image: np.ndarray, colour_order: str = "BGR") -> Path:
        """Save the model's view of ``image`` into ``root/label/``; returns the file written."""
        name = check_label(label)
        with self._lock:
            if name not in self._folders:
                self._folders[name] = ClassFolder(self.root, name)
            folder = self._folders[name]
        return folder.save(image, colour_order)


@dataclasses.dataclass
class CollectConfig:
    """Everything ``toolkit collect`` needs; each field is one CLI flag."""

    source: str  # camera index, /dev/videoN, video, image, folder, rtsp:// or http:// URL, or picamera2
    label: str  # class name: the images go to OUT/LABEL/
    out: str  # root of the image folder (ROOT/<class>/<image>.jpg, what `toolkit train --data` reads)
    count: int | None = None  # stop after N images (None: at the end of the source or on Ctrl-C)
    every: float = 0.5  # minimum seconds between saved frames (time in the video for a file or folder)


class _Progress:
    """The running count on stderr: one updating line on a terminal, else one line per saved image."""

    def __init__(self, stream: TextIO, folder: Path) -> None:
        self.stream = stream
        self.folder = folder
        self.terminal = bool(getattr(stream, "isatty", lambda: False)())

    def saved(self, count: int, path: Path) -> None:
        if self.terminal:
            self.stream.write(f"\rcollecting into {self.folder}: {count} saved (Ctrl-C stops)")
        else:
            self.stream.write(f"saved {path} ({count})\n")
        self.stream.flush()

    def finish(self, count: int) -> None:
        if self.terminal and count:
            self.stream.write("\n")
            self.stream.flush()


def _source_time(frame: Frame, source: Source) -> float:
    """When ``frame`` was taken: the wall clock for a camera or stream, the position in a file or folder."""
    return frame.captured_at if source.live else frame.index / source.fps


def _check_config(config: CollectConfig) -> None:
    if config.count is not None and config.count < 1:
        raise ToolkitError(f"--count must be at least 1, got {config.count}")
    if not (config.every >= 0 and math.isfinite(config.every)):
        raise ToolkitError(f"--every must be 0 or more seconds, got {config.every}")


def _save_frames(source: Source, folder: ClassFolder, config: CollectConfig, stop: threading.Event,
                 progress: _Progress) -> tuple[int, int]:
    """Save frames until the source ends, ``config.count`` is reached or ``stop`` is set: (read, unreadable)."""
    last_saved = -math.inf
    read = unreadable = 0
    for frame in source.frames(stop):
        if frame.image is None:
            unreadable += 1
            continue
        read += 1
        taken = _source_time(frame, source)
        if taken - last_saved < config.every:
            continue
        progress.saved(folder.saved + 1, folder.save(frame.image, frame.colour_order))
        last_saved = taken
        if config.count is not None and folder.saved >= config.count:
            break
    return read, unreadable


def _collect(source: Source, folder: ClassFolder, config: CollectConfig, stop: threading.Event,
             stderr: TextIO) -> tuple[int, int]:
    """:func:`_save_frames` with the running count on ``stderr``, Ctrl-C and SIGTERM ending it cleanly."""
    progress = _Progress(stderr, folder.path)
    try:
        with stop_on_signals(stop):
            return _save_frames(source, folder, config, stop, progress)
    finally:
        progress.finish(folder.saved)


def run_collect(config: CollectConfig, source: Source | None = None, stop: threading.Event | None = None,
                stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Save frames of ``config.source`` into ``config.out/config.label/``; returns the number of images saved.

    The running count goes to ``stderr``, the one-line summary to ``stdout``.
    """
    _check_config(config)
    check_label(config.label)
    writable_folder(config.out)
    stop = stop or threading.Event()
    source = source or open_source(config.source)
    try:
        folder = ClassFolder(config.out, config.label)
        read, unreadable = _collect(source, folder, config, stop, stderr or sys.stderr)
    finally:
        source.close()
    skipped = f" ({unreadable} unreadable frames skipped)" if unreadable else ""
    print(f"saved {folder.saved} image{'' if folder.saved == 1 else 's'} to {folder.path}{skipped}",
          file=stdout or sys.stdout, flush=True)
    if read == 0 and not stop.is_set():
        with contextlib.suppress(OSError):
            folder.path.rmdir()  # only when empty: never an image collected before
        detail = f"{unreadable} unreadable" if unreadable else "it holds none"
        raise ToolkitError(f"no frame of {source.description} could be read ({detail})")
    return folder.saved

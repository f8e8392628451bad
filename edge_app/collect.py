"""Collect training images: frames centre-cropped, saved as numbered JPEGs.

``toolkit collect`` (the centred square) and the ``toolkit classify --serve`` capture control (the model's aspect
ratio) both save through :class:`ClassFolder` as ROOT/<label>/0000.jpg, 0001.jpg, ... after the numbers already there,
each written to a hidden temporary file (skipped by training) and renamed: an interrupted run leaves whole images only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import threading
from pathlib import Path
from typing import TextIO

import numpy as np

from edge_app.signals import stop_on_signals
from edge_app.sources import Source, open_source
from toolkit import atomic
from toolkit.errors import ToolkitError, check
from toolkit.preprocessing import center_crop, convert_colour

JPEG_QUALITY = 95  # of saved training images


def encode_jpeg(image_bgr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``image_bgr`` as JPEG bytes; a one-line error when OpenCV cannot encode it."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ToolkitError(f"OpenCV could not encode a {image_bgr.shape} frame as JPEG")
    return encoded.tobytes()


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
    numbers = [int(path.stem) for path in folder.iterdir() if path.stem.isdecimal()]
    return max(numbers, default=-1) + 1


class ClassFolder:
    """``root/label/``: saves frames as the next numbered JPEGs, never over an existing file; thread-safe."""

    def __init__(self, root: str | os.PathLike, label: str, aspect: tuple[int, int] = (1, 1)) -> None:
        self.path = writable_folder(Path(root) / check_label(label))
        self.aspect = aspect  # (height, width) of the model input whose view is saved
        self._number = _next_number(self.path)
        self._lock = threading.Lock()
        self.saved = 0

    def save(self, image: np.ndarray, colour_order: str = "BGR") -> Path:
        """Save ``image``'s centred crop of ``self.aspect`` (native resolution) as the next number; returns the file."""
        encoded = encode_jpeg(convert_colour(center_crop(image, *self.aspect), colour_order, "BGR"))
        with self._lock:
            while (target := self.path / f"{self._number:04d}.jpg").exists():  # another writer took the name
                self._number += 1
            try:
                atomic.write_bytes(target, encoded)
            except OSError as error:
                raise ToolkitError(f"cannot write {target}: {error.strerror or error}") from None
            self._number += 1
            self.saved += 1
        return target


class CaptureFolders:
    """The class folders under one root, opened when a label is first used (the ``--serve`` capture control)."""

    def __init__(self, root: str | os.PathLike, aspect: tuple[int, int] = (1, 1)) -> None:
        self.root = writable_folder(root)
        self.aspect = aspect
        self._folders: dict[str, ClassFolder] = {}
        self._lock = threading.Lock()

    def save(self, label: str, image: np.ndarray, colour_order: str = "BGR") -> Path:
        """Save the model's view of ``image`` into ``root/label/``; returns the file written."""
        name = check_label(label)
        with self._lock:
            if name not in self._folders:
                self._folders[name] = ClassFolder(self.root, name, self.aspect)
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


def _save_frames(source: Source, folder: ClassFolder, config: CollectConfig, stop: threading.Event,
                 stderr: TextIO) -> tuple[int, int]:
    """Save frames until the source ends, ``config.count`` is reached or ``stop`` is set (Ctrl-C, SIGTERM);
    returns (frames read, unreadable frames)."""
    terminal = bool(getattr(stderr, "isatty", lambda: False)())
    last_saved = -math.inf
    read = unreadable = 0
    try:
        with stop_on_signals(stop):
            for frame in source.frames(stop):
                if frame.image is None:
                    unreadable += 1
                    continue
                read += 1
                # When it was taken: the wall clock for a camera or stream, the position in a file or folder.
                taken = frame.captured_at if source.live else frame.index / source.fps
                if taken - last_saved < config.every:
                    continue
                path = folder.save(frame.image, frame.colour_order)
                if terminal:
                    stderr.write(f"\rcollecting into {folder.path}: {folder.saved} saved (Ctrl-C stops)")
                else:
                    stderr.write(f"saved {path} ({folder.saved})\n")
                stderr.flush()
                last_saved = taken
                if config.count is not None and folder.saved >= config.count:
                    break
    finally:
        if terminal and folder.saved:
            stderr.write("\n")
            stderr.flush()
    return read, unreadable


def run_collect(config: CollectConfig, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Save frames of ``config.source`` into ``config.out/config.label/`` (the running count on ``stderr``, the
    summary on ``stdout``); returns the number of images saved."""
    check(
        (config.count is None or config.count >= 1, f"--count must be at least 1, got {config.count}"),
        (config.every >= 0 and math.isfinite(config.every), f"--every must be 0 or more seconds, got {config.every}"),
    )
    check_label(config.label)
    writable_folder(config.out)
    stop = threading.Event()
    source = open_source(config.source)
    try:
        folder = ClassFolder(config.out, config.label)
        read, unreadable = _save_frames(source, folder, config, stop, stderr or sys.stderr)
    finally:
        source.close()
    skipped = f" ({unreadable} unreadable frames skipped)" if unreadable else ""
    print(f"saved {folder.saved} image{'' if folder.saved == 1 else 's'} to {folder.path}{skipped}",
          file=stdout or sys.stdout, flush=True)
    if read == 0 and not stop.is_set():
        with contextlib.suppress(OSError):
            folder.path.rmdir()  # only when empty: never an image collected before
        raise source.nothing_read(unreadable)
    return folder.saved

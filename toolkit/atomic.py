"""Atomic artifact writes: write to a temporary file beside the target, then rename.

A run killed at any moment leaves either the previous complete artifact or the new
complete artifact, never a truncated one.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success rename it onto ``target``.

    The temporary file keeps the target's suffix (or ``suffix``) because some writers,
    such as ``keras.Model.save``, choose the format from the file extension.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=suffix if suffix is not None else target.suffix, dir=target.parent
    )
    os.close(descriptor)
    os.unlink(temporary)  # writers that refuse to overwrite get a fresh path
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        if temporary_path.exists():
            with open(temporary_path, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary_path, target)
    finally:
        if temporary_path.exists():
            temporary_path.unlink()


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``target`` and return the target path."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)
    return Path(target)


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``target`` and return the target path."""
    return write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, payload: Any) -> Path:
    """Atomically write ``payload`` as indented JSON (numpy scalars allowed)."""
    return write_text(target, json.dumps(payload, indent=2, default=_json_default) + "\n")


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``; {} when the file is missing, broken or holds something else."""
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (sha256 for artifact identity, md5 for published checksums)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Settings that change where or how verbosely a stage runs, not what it computes (its input model counts by content).
INCIDENTAL_SETTINGS = frozenset({"out", "model", "progress", "overwrite", "resume", "workers"})


def settings_digest(settings: dict[str, Any]) -> str:
    """SHA-256 of a stage's settings (a config's ``to_dict()`` or its JSON), the incidental ones left out: two configs
    that compute the same thing digest alike."""
    kept = {key: value for key, value in settings.items() if key not in INCIDENTAL_SETTINGS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def gzip_size(source: str | os.PathLike | bytes) -> int:
    """Bytes of a file (or of ``bytes``) after ``gzip -9``: what a download or an over-the-air update ships."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays turn up in reports; json cannot serialise them itself.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")

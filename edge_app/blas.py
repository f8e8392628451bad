"""Keep numpy's BLAS to one thread while the edge app runs.

The shared preprocessing resizes with two small matrix products. OpenBLAS would run
them on every core and spin-wait between calls, fighting the interpreter's XNNPACK
threads for the same few cores (on a 2-core machine it made preprocessing 10x
slower). This is what threadpoolctl does, for OpenBLAS only, without the dependency.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

# Exported names of the thread setter/getter in the OpenBLAS builds numpy wheels ship.
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = tuple(name.replace("_set_", "_get_") for name in _SETTERS)


def _loaded_openblas() -> list[str]:
    import numpy  # noqa: F401 - make sure numpy's BLAS is loaded before looking for it

    try:
        with open("/proc/self/maps") as handle:
            maps = handle.read()
    except OSError:  # not Linux: leave BLAS alone
        return []
    return sorted(set(re.findall(r"(/\S*openblas\S*\.so[\w.]*)", maps)))


def _function(library: ctypes.CDLL, names: tuple[str, ...]) -> Any | None:
    """The first of ``names`` that ``library`` exports, or None."""
    return next((getattr(library, name) for name in names if hasattr(library, name)), None)


def limit_blas_threads(threads: int = 1) -> dict[str, int]:
    """Set every loaded OpenBLAS to ``threads``; returns {library: previous thread count}."""
    previous: dict[str, int] = {}
    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter, getter = _function(library, _SETTERS), _function(library, _GETTERS)
        if setter is not None:
            previous[path] = int(getter()) if getter is not None else -1
            setter(ctypes.c_int(threads))
    return previous


def restore_blas_threads(previous: dict[str, int]) -> None:
    """Undo :func:`limit_blas_threads` with the counts it returned."""
    for path, threads in previous.items():
        if threads > 0:
            _function(ctypes.CDLL(path), _SETTERS)(ctypes.c_int(threads))

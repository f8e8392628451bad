"""Keep numpy's BLAS to one thread while the edge app runs.

The shared preprocessing resizes with two small matrix products. OpenBLAS would run
them on every core and spin-wait between calls, fighting the interpreter's XNNPACK
threads for the same few cores (on a 2-core machine it made preprocessing 10x
slower). This is what threadpoolctl does, for OpenBLAS only, without the dependency.
"""

from __future__ import annotations

import ctypes
import re

# Exported names of the thread setter/getter in the OpenBLAS builds numpy wheels ship.
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads64_",
            "openblas_get_num_threads")


def _loaded_openblas() -> list[str]:
    import numpy  # noqa: F401 - make sure numpy's BLAS is loaded before looking for it

    try:
        with open("/proc/self/maps") as handle:
            maps = handle.read()
    except OSError:  # not Linux: leave BLAS alone
        return []
    return sorted(set(re.findall(r"(/\S*openblas\S*\.so[\w.]*)", maps)))


def limit_blas_threads(threads: int = 1) -> dict[str, int]:
    """Set every loaded OpenBLAS to ``threads``; returns {library: previous thread count}."""
    previous: dict[str, int] = {}
    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(library, name) for name in _SETTERS if hasattr(library, name)), None)
        getter = next((getattr(library, name) for name in _GETTERS if hasattr(library, name)), None)
        if setter is None:
            continue
        previous[path] = int(getter()) if getter is not None else -1
        setter(ctypes.c_int(threads))
    return previous


def blas_threads() -> dict[str, int]:
    """Current thread count of every loaded OpenBLAS (for reports)."""
    counts: dict[str, int] = {}
    for path in _loaded_openblas():
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        getter = next((getattr(library, name) for name in _GETTERS if hasattr(library, name)), None)
        if getter is not None:
            counts[path] = int(getter())
    return counts


def restore_blas_threads(previous: dict[str, int]) -> None:
    """Undo :func:`limit_blas_threads` with the counts it returned."""
    for path, threads in previous.items():
        if threads > 0:
            library = ctypes.CDLL(path)
            setter = next((getattr(library, name) for name in _SETTERS if hasattr(library, name)), None)
            if setter is not None:
                setter(ctypes.c_int(threads))

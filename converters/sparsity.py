"""Kernel sparsity: the fraction of exactly-zero weights in conv and dense kernels.

Biases, batch-norm parameters and quantiser ranges are not counted: pruning leaves
them dense, and they are a tiny share of the parameters. The same definition is used
for Keras models (float kernels) and ``.tflite`` files (int8 kernels, see
``converters.tflite_inspect``), so a sparsity survives conversion when the two agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel")


@dataclasses.dataclass
class SparsityReport:
    """Zeros per kernel and overall."""

    per_layer: dict[str, float]  # layer name -> fraction of zero weights in its kernel
    zeros: int  # zero kernel weights, all layers
    total: int  # kernel weights, all layers

    @property
    def overall(self) -> float:
        return self.zeros / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": round(self.overall, 6),
            "zeros": self.zeros,
            "total": self.total,
            "per_layer": {name: round(value, 6) for name, value in self.per_layer.items()},
        }


def sparsity_of_arrays(kernels: Iterable[tuple[str, np.ndarray]]) -> SparsityReport:
    """Sparsity of named kernel arrays."""
    per_layer: dict[str, float] = {}
    zeros = total = 0
    for name, kernel in kernels:
        kernel = np.asarray(kernel)
        layer_zeros = int(np.count_nonzero(kernel == 0))
        per_layer[name] = layer_zeros / kernel.size if kernel.size else 0.0
        zeros += layer_zeros
        total += int(kernel.size)
    return SparsityReport(per_layer, zeros, total)


def model_kernels(model: Any) -> list[tuple[str, np.ndarray]]:
    """(layer name, kernel) of every conv/dense layer of a plain Keras model (either stack)."""
    kernels = []
    for layer in model.layers:
        for attribute in KERNEL_ATTRIBUTES:
            variable = getattr(layer, attribute, None)
            if variable is not None and hasattr(variable, "shape") and len(variable.shape) >= 2:
                kernels.append((layer.name, np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)))
                break
    return kernels


def entropy_bits(values: np.ndarray) -> float:
    """Order-0 entropy of ``values`` in bits per value: what a coder that codes each value on its own needs."""
    _, counts = np.unique(values, return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log2(shares)).sum())


def nonzero_entropy_bits(values: np.ndarray) -> float:
    """:func:`entropy_bits` of the non-zero ``values``: what coding each non-zero weight costs once zeros are coded apart."""
    return entropy_bits(values[values != 0])


def model_sparsity(model: Any) -> SparsityReport:
    """Kernel sparsity of a plain Keras model."""
    return sparsity_of_arrays(model_kernels(model))


def m_by_n_violations(kernel: np.ndarray, m: int = 2, n: int = 4) -> int:
    """Blocks of ``n`` consecutive input-channel weights that hold fewer than ``m`` zeros.

    tfmot's ``sparsity_m_by_n`` works on the TFLite layout (output channel first, input
    channel last) in blocks of ``n`` along the input channels, zero-padding the last
    block; a Keras kernel is (..., in, out). 0 means the kernel has the M:N pattern.
    """
    kernel = np.asarray(kernel)
    rows = np.moveaxis(kernel, -1, 0).reshape(-1, kernel.shape[-2])  # (out * h * w, in)
    padding = (-rows.shape[1]) % n
    rows = np.pad(rows, ((0, 0), (0, padding)))
    blocks = rows.reshape(-1, n)
    return int(np.count_nonzero(np.count_nonzero(blocks, axis=1) > n - m))

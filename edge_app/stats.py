"""Run statistics for the summary: frames, mean FPS, inference-time percentiles (bounded memory), drops and faults."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

SAMPLE_SIZE = 100_000  # inference times kept for the percentiles
WARMUP_FRAMES = 200  # frames before the "after warm-up" memory reading


def resident_memory_mb() -> float | None:
    """This process's resident set size in MiB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


class Reservoir:
    """A uniform sample of ``SAMPLE_SIZE`` numbers from a stream (Vitter's algorithm R), seeded: runs sample alike."""

    def __init__(self) -> None:
        self.values = np.empty(SAMPLE_SIZE, dtype=np.float32)
        self.seen = 0
        self._rng = np.random.default_rng(0)

    def add(self, value: float) -> None:
        slot = self.seen if self.seen < len(self.values) else int(self._rng.integers(0, self.seen + 1))
        if slot < len(self.values):
            self.values[slot] = value
        self.seen += 1

    def sample(self) -> np.ndarray:
        return self.values[: self.seen]


@dataclasses.dataclass
class RunStats:
    """Counters the pipeline threads update; :meth:`summary` turns them into the end-of-run report."""

    frames: int = 0  # frames classified
    unreadable: int = 0  # frames the source delivered broken or empty (skipped)
    dropped: int = 0  # frames replaced by a newer one before inference (live sources)
    reconnects: int = 0  # times a lost camera or stream came back
    first_frame_at: float | None = None  # perf_counter() when inference of the first frame started
    last_frame_at: float | None = None  # perf_counter() when the last frame's output was out
    rss_after_warmup_mb: float | None = None
    capture_cpu_seconds: float = 0.0  # CPU time of the capture thread (decode, preprocess; not FFmpeg's threads)
    inference_cpu_seconds: float = 0.0  # CPU time of the inference thread (invoke() and hand-offs; not XNNPACK's extra threads with --threads > 1)
    inference: Reservoir = dataclasses.field(default_factory=Reservoir)

    def record_inference(self, started_at: float, seconds: float) -> None:
        """Count one classified frame that took ``seconds`` in the interpreter."""
        if self.first_frame_at is None:
            self.first_frame_at = started_at
        self.frames += 1
        self.inference.add(seconds * 1000.0)
        if self.frames == WARMUP_FRAMES:
            self.rss_after_warmup_mb = resident_memory_mb()

    @property
    def elapsed(self) -> float:
        if self.first_frame_at is None or self.last_frame_at is None:
            return 0.0
        return max(self.last_frame_at - self.first_frame_at, 1e-9)

    def _per_frame_ms(self, seconds: float) -> float | None:
        return _rounded(1000.0 * seconds / self.frames, 3) if self.frames else None

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The end-of-run report as a JSON-ready dict."""
        sample = self.inference.sample()
        p50, p95, mean = (*np.percentile(sample, [50, 95]), sample.mean()) if sample.size else (None, None, None)
        return {
            "frames": self.frames,
            "seconds": round(self.elapsed, 3),
            "mean_fps": round(self.frames / self.elapsed, 2) if self.frames and self.elapsed else 0.0,
            "inference_ms_p50": _rounded(p50, 3),
            "inference_ms_p95": _rounded(p95, 3),
            "inference_ms_mean": _rounded(mean, 3),
            "dropped_frames": self.dropped,
            "unreadable_frames": self.unreadable,
            "reconnects": self.reconnects,
            # Which stage bounds the FPS: the busier thread, per classified frame.
            "capture_cpu_ms_per_frame": self._per_frame_ms(self.capture_cpu_seconds),
            "inference_cpu_ms_per_frame": self._per_frame_ms(self.inference_cpu_seconds),
            "rss_mb_after_warmup": _rounded(self.rss_after_warmup_mb),
            "rss_mb_end": _rounded(resident_memory_mb()),
            **extra,
        }


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def format_summary(report: dict[str, Any]) -> str:
    """One human-readable line for stderr."""
    p50, p95 = report.get("inference_ms_p50"), report.get("inference_ms_p95")
    timing = f"inference p50 {p50:.2f} ms, p95 {p95:.2f} ms" if p50 is not None else "no inference"
    return (
        f"summary: {report['frames']} frames in {report['seconds']:.1f} s, {report['mean_fps']:.1f} FPS, {timing}, "
        f"{report['dropped_frames']} dropped, {report['unreadable_frames']} unreadable, "
        f"{report['reconnects']} reconnects"
    )

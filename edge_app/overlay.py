"""Draw the result on a frame: top-k labels and scores, FPS and inference time."""

from __future__ import annotations

import numpy as np

from toolkit.preprocessing import Prediction

MIN_SIDE = 240  # smaller frames (CIFAR-sized video) are enlarged so the text stays readable


def annotate(frame: np.ndarray, predictions: list[Prediction], fps: float, inference_ms: float) -> np.ndarray:
    """A BGR copy of ``frame`` with the top-k, FPS and inference time written on it."""
    import cv2

    if frame.ndim == 2 or frame.shape[2] == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    height, width = frame.shape[:2]
    factor = -(-MIN_SIDE // min(height, width))  # ceil(MIN_SIDE / shorter side)
    canvas = cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) if factor > 1 else frame.copy()
    lines = [(f"{p.label} {p.score * 100:.0f}%", (255, 255, 255)) for p in predictions]
    lines = lines or [("no class above threshold", (200, 200, 200))]
    lines.append((f"{fps:.1f} FPS  {inference_ms:.1f} ms", (0, 255, 255)))
    scale = max(0.45, canvas.shape[1] / 900.0)
    line_height = int(30 * scale) + 4
    box_width = int(max(cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for text, _ in lines)) + 12
    box_height = line_height * len(lines) + 8
    # Darken the text box in place: cheaper than blending a whole overlay image.
    region = canvas[:box_height, :box_width]
    region[:] = (region * 0.4).astype(np.uint8)
    for row, (text, colour) in enumerate(lines):
        baseline = 4 + line_height * (row + 1) - 6
        thickness = 2 if row == 0 and predictions else 1
        cv2.putText(canvas, text, (6, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return canvas

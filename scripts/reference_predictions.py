"""Per-frame top-k of a video with LiteRT's reference kernels, as JSON lines like `toolkit classify --headless`.

Used by ``scripts/check_aarch64.sh`` on both architectures. The reference kernels are
plain integer C++ with no SIMD, so the same model and the same frames must give
bit-identical outputs on x86-64 and aarch64; any difference would point at the model
or the preprocessing rather than at the optimised kernels' rounding. Needs only the
edge dependencies (numpy, OpenCV, ai-edge-litert).

    python scripts/reference_predictions.py MODEL.tflite VIDEO [--max-frames 60] > out.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2

from toolkit.preprocessing import top_predictions
from edge_app.runtime import TFLitePredictor, runtime_module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("video")
    parser.add_argument("--max-frames", type=int, default=60)
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    classifier = TFLitePredictor(args.model, threads=1)
    _, module = runtime_module()
    # Swap in an interpreter on the reference kernels; the tensor details are the same model's.
    classifier.interpreter = module.Interpreter(
        model_path=args.model, num_threads=1, experimental_op_resolver_type=module.OpResolverType.BUILTIN_REF
    )
    classifier.interpreter.allocate_tensors()

    capture = cv2.VideoCapture(args.video)
    if not capture.isOpened():
        print(f"error: cannot open {args.video}", file=sys.stderr)
        return 2
    for index in range(args.max_frames):
        ok, frame = capture.read()
        if not ok:
            break
        probabilities = classifier.predict(frame[None], colour_order="BGR")[0]
        predictions = top_predictions(probabilities, classifier.labels, args.top_k)
        print(json.dumps({"frame": index, "top_k": [prediction.to_dict() for prediction in predictions]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

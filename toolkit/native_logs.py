"""TensorFlow's and LiteRT's native chatter, kept off the terminal.

While TensorFlow loads, its C++ core writes a few lines straight to file descriptor 2,
before absl logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795928943.123265    4457 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1795928943.123593    4457 cudart_stub.cc:31] Could not find cuda drivers on your machine, ...
    E0000 00:00:1795928946.239592    4457 cuda_platform.cc:52] failed call to cuInit: ...

and the int8 converter adds ``fully_quantize: 0, inference_type: 6, ...``. Every command
that loads TensorFlow printed them above its own output, even above a one-line ``error:``.
:func:`quiet_native_logs` captures descriptor 2 around such calls and writes back
everything but those lines. ``TOOLKIT_DEBUG=1`` shows them all. Standard library only:
the shared core stays free of TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

# absl's informational records: "I<mmdd> <hh:mm:ss.micros> <thread> <file>:<line>] <text>"
_ABSL_INFO = re.compile(r"^I\d{4} \d{2}:\d{2}:\d+\.\d+\s+\d+ [\w.\-]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_CPU_FEATURES_CONTINUATION = "To enable the following instructions:"  # second line of cpu_feature_guard's record
_NO_CUDA_DRIVER = "Could not find cuda drivers on your machine"
_CUINIT_FAILED = re.compile(r"^E\d{4} .*failed call to cuInit")
_QUANTIZER_SETTINGS = re.compile(r"^fully_quantize: \d+, inference_type: ")  # printed by every int8 conversion
_XNNPACK_CREATED = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."  # LiteRT, at every interpreter's allocation


def lines_to_show(captured: str) -> list[str]:
    """The lines of ``captured`` start-up output worth showing: all but the chatter the patterns above match.

    The failed ``cuInit`` error goes only when the same start-up said there is no CUDA driver (with one, it is news).
    """
    lines = captured.splitlines()
    patterns = [_ABSL_INFO, _QUANTIZER_SETTINGS, *([_CUINIT_FAILED] if any(_NO_CUDA_DRIVER in line for line in lines) else [])]
    return [
        line
        for line in lines
        if line.strip() and line not in (_ABSL_PREAMBLE, _XNNPACK_CREATED) and not line.startswith(_CPU_FEATURES_CONTINUATION)
        if not any(pattern.match(line) for pattern in patterns)
    ]


@contextlib.contextmanager
def quiet_native_logs(start_gpu_platform: bool = False) -> Iterator[None]:
    """Import, convert or load an interpreter inside this block; TensorFlow's and LiteRT's chatter is dropped,
    and everything else written to descriptor 2 meanwhile is written back after the block.

    ``start_gpu_platform``: start a loaded TensorFlow's GPU platform (the ``cuInit`` line's source) inside the block,
    with ``list_physical_devices``, which leaves its runtime unstarted for ``tf.distribute`` strategies created later.
    """
    if os.environ.get("TOOLKIT_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 (a service without stderr): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
            tensorflow = sys.modules.get("tensorflow") if start_gpu_platform else None
            if tensorflow is not None and hasattr(tensorflow, "config"):
                tensorflow.config.list_physical_devices("GPU")
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in lines_to_show(capture.read().decode("utf-8", errors="replace")):
                print(line, file=sys.stderr)

"""What every benchmark records about the sitting it ran in, and how its script ends (imported by the scripts here)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from typing import Any, Callable

from toolkit.errors import ToolkitError


def sitting(script: str, argv: list[str]) -> dict[str, Any]:
    """The command that made a result, the machine, the Keras backend and the load when it started."""
    from training.backend import backend_name, keras

    return {
        "generated_by": shlex.join(["python", f"benchmarks/{script}", *argv]),
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "backend": backend_name(),
        "keras": keras.__version__,
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


def run_script(main: Callable[[], int]) -> None:
    """Exit with ``main``'s code; a ToolkitError is one ``error:`` line and its exit code."""
    try:
        sys.exit(main())
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)

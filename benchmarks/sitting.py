"""What every benchmark records about the sitting it ran in, and how its script ends (imported by the scripts here)."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from typing import Any, Callable

from toolkit.errors import ToolkitError

# Fields that say how to run, not what to train (data and budget are compared by meaning).
RUN_ONLY_FIELDS = ("out", "resume", "progress", "data", "budget")


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


def settings_differences(run_config: dict[str, Any], config: Any) -> list[str]:
    """The fields in which a run folder's config.json differs from the TrainConfig an arm asks for."""
    from training.data import absolute_spec
    from training.train_config import TrainConfig, parse_budget

    saved = TrainConfig.requested_by_run(run_config).to_dict()
    wanted = config.resolved().to_dict()
    differences = [key for key in wanted if key not in RUN_ONLY_FIELDS and saved[key] != wanted[key]]
    if absolute_spec(saved["data"]) != absolute_spec(config.data):
        differences.append("data")
    if parse_budget(saved["budget"]) != config.budget_seconds:
        differences.append("budget")
    return differences


def run_script(main: Callable[[], int]) -> None:
    """Exit with ``main``'s code; a ToolkitError is one ``error:`` line and its exit code."""
    try:
        sys.exit(main())
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)

"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class ToolkitError(Exception):
    """A problem with the user's input or environment, in one line that names the file, flag or value; the CLI
    prints ``error: <message>`` and exits with ``exit_code`` instead of a traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check(*checks: tuple[bool, str]) -> None:
    """Raise a ToolkitError with the message of the first ``(ok, message)`` check that fails: a config's one-line errors."""
    for ok, message in checks:
        if not ok:
            raise ToolkitError(message)


def first_line(error: BaseException, default: str | None = None) -> str:
    """The first line of ``error``'s message; ``default`` (else the error's type name) when it has none."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else default if default is not None else type(error).__name__


class ToolkitWarning(UserWarning):
    """Something the user should know that does not stop the run (skipped files); the CLI prints ``warning: <message>``."""

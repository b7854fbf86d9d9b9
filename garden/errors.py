"""User-facing errors: one line that names the problem and the fix."""

import difflib
import signal


class GardenError(Exception):
    """An error the CLI prints as one line, without a traceback."""


class Stopped(GardenError):
    """A command stopped by a signal after leaving its work to resume (a trainer's checkpoint): the
    CLI prints it as one line and exits 128 + the signal's number, as a shell reports a signal."""

    def __init__(self, message: str, signum: int = signal.SIGTERM):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def shown(text) -> str:
    """`text` for a one-line message: line breaks and other unprintable characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def did_you_mean(name, choices, prefix=""):
    """Returns "; did you mean 'x'?" for the closest choice (with `prefix`), or a list of choices, each
    as `shown` writes it (a file's column names may hold line breaks)."""
    choices = sorted(map(shown, choices))
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; choose from: {', '.join(choices)}" if choices else ""

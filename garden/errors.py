"""User-facing errors: one line that names the problem and the fix."""

import difflib


class GardenError(Exception):
    """An error the CLI prints as one line, without a traceback."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def did_you_mean(name, choices, prefix=""):
    """Returns "; did you mean 'x'?" for the closest choice (with `prefix`), or a list of choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; choose from: {', '.join(choices)}" if choices else ""

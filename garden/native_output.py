"""Keeps what TensorFlow's and LiteRT's C++ code prints (absl log lines, converter notes, XNNPACK
INFO lines) off the terminal; `garden --verbose` (GARDEN_VERBOSE=1) shows it again."""

import contextlib
import os
import sys

VERBOSE = "GARDEN_VERBOSE"


@contextlib.contextmanager
def quiet():
    """Sends file descriptors 1 and 2 to /dev/null for the block (C++ writes there directly, past
    Python's sys.stdout and sys.stderr); Python exceptions still raise."""
    if os.environ.get(VERBOSE):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)

"""Keeps what TensorFlow's and LiteRT's C++ code prints (absl log lines, converter notes, XNNPACK
INFO lines) off the terminal; `garden --verbose` (GARDEN_VERBOSE=1) shows it again."""

import contextlib
import os
import re
import sys
import threading

VERBOSE = "GARDEN_VERBOSE"
# What C++ libraries print past Python: absl log lines ('I0000 00:00:1796.. 123 file.cc:196] ...'), absl's
# note on its own start, and libjpeg's warnings (TensorFlow decodes through it; Garden names bad images itself)
NATIVE_LINE = re.compile(
    rb"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\] |WARNING: All log messages before absl::InitializeLog"
    rb"|Corrupt JPEG data|Improper call to JPEG library|Premature end of JPEG file)"
)


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


@contextlib.contextmanager
def filtered_stderr():
    """Within the block, lines written to file descriptor 2 (by Python or C++) that `NATIVE_LINE` matches
    are dropped and the rest pass on: a pipe in place of descriptor 2, drained by a thread."""
    if os.environ.get(VERBOSE):
        yield
        return
    sys.stderr.flush()
    original, forward = os.dup(2), os.dup(2)  # the thread's own copy: it may outlive the block
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def drain():
        pending = b""
        while chunk := os.read(read_end, 1 << 16):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not NATIVE_LINE.match(line):
                    os.write(forward, line + b"\n")
            if pending and pending[0] not in b"IWEFCP":  # cannot become a native line: a progress bar's update
                os.write(forward, pending)
                pending = b""
        if pending and not NATIVE_LINE.match(pending):
            os.write(forward, pending)
        os.close(read_end)
        os.close(forward)

    thread = threading.Thread(target=drain, name="garden-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer closes, unless a child process holds it: then the
        os.close(original)  # thread goes on passing the child's lines
        thread.join(timeout=5)

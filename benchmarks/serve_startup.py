"""How soon `garden serve` answers its first request, against a bare process that loads the same SavedModel.

Each round, alternating, two fresh processes start on the same SavedModel:

- bare: `python -c` imports TensorFlow, runs `tf.saved_model.load` and calls `serving_default` once
  on one row of zeros (of its first input's shape and dtype), which is the least any Python server
  does before its first answer; it reports when it answered, and how long the import, the load
  and the call took;
- served: `python -m garden.cli serve bench=SAVED_MODEL` on a free port of 127.0.0.1, while this
  script POSTs that row to `/v1/models/bench:predict` every 20 ms until a 200 comes back.

Both times run from just before the process starts (`time.monotonic`, which every process on the
machine shares). The issue's bar is a first answer within 3 s plus the SavedModel's own load time:
printed is the served first answer, the bare one, the load alone, and the served minus the bare.
Also measured in fresh processes: the import time of `tensorflow` alone and of
`garden.export.serve` (which imports TensorFlow itself). The script imports no Garden module, so
it measures whichever Garden the interpreter finds: run from outside the repository with
PYTHONPATH=ANOTHER_TREE to measure another.

Without SAVED_MODEL it exports a tiny Keras model (Dense 8 -> 4) into a temporary folder.

    python benchmarks/serve_startup.py [SAVED_MODEL] [--rounds 3]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

MODEL = "bench"
BARE = """
import json, sys, time
t0 = time.monotonic()
import numpy as np
import tensorflow as tf
t1 = time.monotonic()
model = tf.saved_model.load(sys.argv[1])
t2 = time.monotonic()
signature = model.signatures["serving_default"]
name, spec = next(iter(signature.structured_input_signature[1].items()))
row = np.zeros([1, *spec.shape[1:]], spec.dtype.as_numpy_dtype)
signature(**{name: tf.constant(row)})
t3 = time.monotonic()
print(json.dumps({"answered_at": t3, "import_s": t1 - t0, "load_s": t2 - t1, "call_s": t3 - t2,
                  "input": name, "row": row[0].tolist()}))
"""
IMPORT = "import time; t = time.monotonic(); import {module}; print(time.monotonic() - t)"


def tiny_saved_model(folder: str) -> str:
    import keras

    model = keras.Sequential([keras.Input([8]), keras.layers.Dense(4, activation="softmax")])
    path = os.path.join(folder, "tiny")
    model.export(path, format="tf_saved_model", verbose=False)
    return path


def python(code: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout


def bare(path: str) -> dict:
    start = time.monotonic()
    found = json.loads(python(BARE, path).splitlines()[-1])
    return {**found, "first_answer_s": found.pop("answered_at") - start}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served(path: str, body: bytes) -> float:
    """Seconds from starting `garden serve` to its first 200 for `body`."""
    port = free_port()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict", data=body)
    with tempfile.TemporaryFile("w+") as log:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "garden.cli", "serve", f"{MODEL}={path}", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=60) as reply:
                        reply.read()
                        return time.monotonic() - start
                except OSError:
                    if process.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"garden serve exited with {process.returncode}:\n{log.read()}") from None
                    time.sleep(0.02)
        finally:
            process.terminate()
            process.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", nargs="?", help="a SavedModel folder (default: a tiny Keras model's)")
    parser.add_argument("--rounds", type=int, default=3, help="bare and served starts, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.abspath(args.saved_model) if args.saved_model else tiny_saved_model(folder)
        imports = {
            module: statistics.median(float(python(IMPORT.format(module=module))) for _ in range(args.rounds))
            for module in ("tensorflow", "garden.export.serve")
        }
        bares, firsts = [], []
        for _ in range(args.rounds):
            bares.append(bare(path))
            body = json.dumps({"instances": [{bares[-1]["input"]: bares[-1]["row"]}]}).encode()
            firsts.append(served(path, body))
    keys = ("first_answer_s", "import_s", "load_s", "call_s")
    median = {key: statistics.median(b[key] for b in bares) for key in keys}
    first = statistics.median(firsts)
    print(json.dumps({"saved_model": args.saved_model or "tiny Keras model", "rounds": args.rounds}))
    print(json.dumps({f"import {module} s": round(seconds, 2) for module, seconds in imports.items()}))
    print(json.dumps({"bare": {key: round(value, 3) for key, value in median.items()}}))
    print(
        json.dumps(
            {
                "served_first_answer_s": round(first, 2),
                "each_s": [round(s, 2) for s in firsts],
                "served_minus_bare_s": round(first - median["first_answer_s"], 2),
                "served_minus_load_s": round(first - median["load_s"], 2),
                "within_3_s_of_bare": first <= median["first_answer_s"] + 3,
            }
        )
    )


if __name__ == "__main__":
    main()

"""`garden serve` under load: rows per second and latency of TF Serving's REST API vs the bare SavedModel.

The input is an exported image-classification SavedModel folder (`garden export RUN --format
saved_model`); its `serving_default` signature must take one float tensor. The rows are real MNIST
test images (the catalog's, float32 in [0, 1], rescaled to the `input_ranges` entry of the manifest
beside the SavedModel when there is one) when the signature's rows hold 28 x 28 values; otherwise
they are uniform random floats in [0, 1] (in the manifest's range when it gives one) of the
signature's shape. Rows are drawn from a pool of the first 1,000 such images.

A fixed, seeded list of `--requests` requests, each of a uniformly random number of rows in
1..`--max-rows`, is measured twice:

- bare: the benchmark process loads the SavedModel and calls the signature on each request's rows,
  one request after the other (after a warm-up call for every row count), and reports rows/s. Its
  outputs are the expected answers;
- served: `python -m garden.cli serve bench=PATH` runs as a subprocess on a free port of 127.0.0.1
  (batching concurrent requests into one model call, with its default limits), and `--clients`
  concurrent clients (coroutines of one aiohttp session holding a connection per client) POST the
  same requests to `/v1/models/bench:predict` in TF Serving's row format, `{"instances": [...]}`.
  Each client takes the next request from the shared list until none is left. The rows/s and
  requests/s are over the wall time of the whole list; latency is per request, from sending the
  body to reading the whole reply (p50, p90, p99). A warm-up pass of 2 x `--clients` requests comes
  first and is not counted.

To keep the client's share of the CPU (which it shares with the server) small, each row's JSON is
written once before the clock starts and a request's body only joins its rows' texts; the replies
are parsed and checked after the clock stops. Every answer is checked: its `predictions` must match
the bare SavedModel's outputs for the same rows (numbers within 1e-5, strings equal). Wrong and
failed (non-200 or lost) answers are counted and listed on stderr, and the script exits non-zero if
there are any.

Printed, one JSON object per line: the setup, the bare figure, the served figure, the server's
/healthz at the end (requests and model calls, which show how well batching filled; rows and
requests per model call are over the measured list only) and the ratio of served to bare rows/s
with the tail latency's spread (p99 / p50).

    python benchmarks/serving.py SAVED_MODEL [--requests 2000] [--clients 32] [--max-rows 64] [--seed 0]
                                 [--quick]
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator

import aiohttp
import numpy as np
import tensorflow as tf

from garden.data.mnist import mnist
from garden.export import manifest

MODEL = "bench"  # the name the server gives the SavedModel
POOL = 1000  # rows are drawn from this many images
ATOL = 1e-5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Signature = Callable[..., dict[str, tf.Tensor]]  # a SavedModel signature: named tensors in and out


def signature_input(signature: Signature, path: str) -> tuple[str, tf.TensorSpec]:
    """The name and spec of the signature's only input."""
    specs = signature.structured_input_signature[1]
    if len(specs) != 1 or not specs[next(iter(specs))].dtype.is_floating:
        raise SystemExit(f"{path}: serving_default must take one float tensor; it takes {specs}")
    return next(iter(specs.items()))


def image_pool(path: str, name: str, spec: tf.TensorSpec, seed: int) -> tuple[np.ndarray, str]:
    """POOL rows of the signature's shape and dtype, and where they come from."""
    shape = spec.shape[1:]
    if not shape.is_fully_defined():
        raise SystemExit(f"input '{name}' has rows of shape {shape}; the benchmark needs a fixed one")
    if shape.num_elements() == 28 * 28:
        images, source = mnist("test").features["image"][:POOL].reshape(POOL, *shape), "MNIST test images"
    else:
        images = np.random.default_rng(seed).random((POOL, *shape), dtype=np.float32)
        source = "uniform random floats"
    low, high = manifest.read(os.path.dirname(os.path.abspath(path))).get("input_ranges", {}).get(name, (0.0, 1.0))
    return (low + images * (high - low)).astype(spec.dtype.as_numpy_dtype), source


def request_rows(requests: int, max_rows: int, seed: int) -> list[np.ndarray]:
    """The indices into the pool of each request's rows: 1..max_rows of them, uniformly."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, POOL, size=count) for count in rng.integers(1, max_rows + 1, size=requests)]


def bare_outputs(
    signature: Signature, name: str, batches: list[np.ndarray]
) -> tuple[float, list[dict[str, np.ndarray]]]:
    """Rows per second of calling `signature` on each batch in turn, and its outputs per batch."""
    for count in sorted({len(b) for b in batches}):  # warm up: one call per row count
        signature(**{name: tf.constant(batches[0][:1].repeat(count, axis=0))})
    start = time.perf_counter()
    outputs = [{k: v.numpy() for k, v in signature(**{name: tf.constant(b)}).items()} for b in batches]
    return sum(len(b) for b in batches) / (time.perf_counter() - start), outputs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


@contextlib.contextmanager
def serving(path: str) -> Iterator[str]:
    """The URL of `garden serve MODEL=path` on a free port once /healthz answers; stopped at the end,
    also on errors. If the server exits before answering, the error holds its output."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "garden.cli", "serve", f"{MODEL}={path}", "--port", str(port)],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(480):
                try:
                    get_json(url + "/healthz")
                    break
                except OSError:
                    if process.poll() is not None:
                        log.seek(0)
                        raise SystemExit(f"garden serve exited with {process.returncode}:\n{log.read()}") from None
                    time.sleep(0.25)
            else:
                raise SystemExit("garden serve did not answer /healthz within 2 minutes")
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def row_texts(pool: np.ndarray) -> list[bytes]:
    """Each pool row as JSON (the float32 values written exactly, so the server reads the same rows)."""
    return [json.dumps(row.tolist(), separators=(",", ":")).encode() for row in pool]


async def load(url: str, texts: list[bytes], requests: list[np.ndarray], clients: int) -> tuple[float, list, list]:
    """(wall seconds, per request (status or None, reply body or error text), per request latency in
    seconds) of `clients` concurrent clients POSTing `requests` (rows as indices into `texts`)."""
    replies, latencies = [None] * len(requests), [0.0] * len(requests)
    pending = iter(range(len(requests)))  # shared: each client takes the next request
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def client() -> None:
            for i in pending:
                body = b'{"instances":[' + b",".join(texts[j] for j in requests[i]) + b"]}"
                start = time.perf_counter()
                try:
                    headers = {"Content-Type": "application/json"}
                    async with session.post(f"{url}/v1/models/{MODEL}:predict", data=body, headers=headers) as reply:
                        replies[i] = (reply.status, await reply.read())
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    replies[i] = (None, f"{type(error).__name__}: {error}")
                latencies[i] = time.perf_counter() - start

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start, replies, latencies


def mismatch(predictions: list, expected: dict[str, np.ndarray]) -> str:
    """Why `predictions` (a reply's rows: a value per row with one output, a dict per row with several)
    differ from the expected outputs, or '' when they match."""
    count = len(next(iter(expected.values())))
    if not isinstance(predictions, list) or len(predictions) != count:
        return f"expected a list of {count} predictions"
    for name, want in expected.items():
        got = predictions
        if len(expected) > 1:
            got = [row.get(name) if isinstance(row, dict) else None for row in predictions]
        if want.dtype == object or want.dtype.kind == "S":
            if got != [w.decode("utf-8", "replace") if isinstance(w, bytes) else w for w in want.tolist()]:
                return f"output '{name}' differs"
            continue
        try:
            array = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            return f"output '{name}' is not a numeric array"
        if array.shape != want.shape:
            return f"output '{name}' has shape {list(array.shape)}, expected {list(want.shape)}"
        if not np.allclose(array, want, atol=ATOL):
            return f"output '{name}' differs by up to {np.max(np.abs(array - want)):.3g}"
    return ""


def check(replies: list, expected: list[dict[str, np.ndarray]]) -> tuple[int, int]:
    """(wrong, failed) answers among `replies`, each listed on stderr."""
    wrong = failed = 0
    for i, (reply, want) in enumerate(zip(replies, expected)):
        status, body = reply or (None, "no answer")
        if status != 200:
            failed += 1
            text = body if isinstance(body, str) else body.decode("utf-8", "replace")
            print(f"request {i}: failed ({status}): {text[:300]}", file=sys.stderr)
            continue
        try:
            why = mismatch(json.loads(body).get("predictions"), want)
        except (json.JSONDecodeError, AttributeError) as error:
            why = f"unreadable reply: {error}"
        if why:
            wrong += 1
            print(f"request {i}: wrong: {why}", file=sys.stderr)
    return wrong, failed


def served_figures(rows: int, seconds: float, latencies: list[float]) -> dict[str, float]:
    """Rows and requests per second over the wall time, and the latency percentiles in ms."""
    p50, p90, p99 = np.percentile(np.array(latencies) * 1000, [50, 90, 99])
    return {
        "rows_per_second": round(rows / seconds, 1),
        "requests_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(float(p50), 2),
        "p90_ms": round(float(p90), 2),
        "p99_ms": round(float(p99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="an exported SavedModel folder (garden export RUN --format saved_model)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="200 requests, 8 clients: proves the script works")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # stops the server too
    count, clients = (200, 8) if args.quick else (args.requests, args.clients)
    path = os.path.abspath(args.saved_model)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    name, spec = signature_input(signature, path)
    pool, source = image_pool(path, name, spec, args.seed)
    requests = request_rows(count, args.max_rows, args.seed)
    rows = sum(len(r) for r in requests)
    setup = {"requests": count, "clients": clients, "max_rows": args.max_rows, "rows": rows}
    setup |= {"cpu_cores": os.cpu_count(), "saved_model": path, "input": name, "shape": spec.shape.as_list()}
    print(json.dumps({**setup, "data": source}), flush=True)

    bare, expected = bare_outputs(signature, name, [pool[r] for r in requests])
    print(json.dumps({"system": "bare SavedModel", "rows_per_second": round(bare, 1)}), flush=True)

    texts = row_texts(pool)
    with serving(path) as url:
        asyncio.run(load(url, texts, requests[: 2 * clients], clients))  # warm up
        before = get_json(url + "/healthz")
        seconds, replies, latencies = asyncio.run(load(url, texts, requests, clients))
        health = get_json(url + "/healthz")
    wrong, failed = check(replies, expected)
    served = served_figures(rows, seconds, latencies)
    print(json.dumps({"system": "garden serve", **served, "wrong": wrong, "failed": failed}), flush=True)
    calls = max(health["model_calls"] - before["model_calls"], 1)
    served_requests = health["predict_requests"] - before["predict_requests"]
    batching = {
        "requests_per_model_call": round(served_requests / calls, 2),
        "rows_per_model_call": round(rows / calls, 1),
    }
    print(json.dumps({"healthz": health, **batching}), flush=True)
    ratio = {
        "ratio_server_to_bare_rows": round(served["rows_per_second"] / bare, 3),
        "p99_over_p50": round(served["p99_ms"] / served["p50_ms"], 2),
    }
    print(json.dumps(ratio), flush=True)
    if wrong or failed:
        raise SystemExit(f"{wrong} wrong and {failed} failed answers of {count}")


if __name__ == "__main__":
    main()

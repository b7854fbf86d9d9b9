"""`garden serve` under load: rows per second and latency of TF Serving's REST and gRPC APIs vs the bare SavedModel.

The input is an exported classifier's SavedModel folder (`garden export RUN --format saved_model`);
its `serving_default` signature must take one float tensor, or one batch of texts. Float rows are
real MNIST test images (the catalog's, float32 in [0, 1], rescaled to the `input_ranges` entry of
the manifest beside the SavedModel when there is one) when the signature's rows hold 28 x 28
values; otherwise they are uniform random floats in [0, 1] (in the manifest's range when it gives
one) of the signature's shape. Rows are drawn from a pool of the first 1,000 such images.

A fixed, seeded list of `--requests` requests, each of a uniformly random number of rows in
1..`--max-rows`, is measured:

- bare: the benchmark process loads the SavedModel and calls the signature on each request's rows,
  one request after the other (after a warm-up call for every row count), and reports rows/s. Its
  outputs are the expected answers;
- served: `python -m garden.cli serve bench=BASE [--grpc-port P]` runs as a subprocess on free ports
  of 127.0.0.1 (batching concurrent requests into one model call, with its default limits), BASE a
  temporary base path whose version 1 is a copy of the SavedModel and its manifest. For each
  protocol of `--protocol`, `--clients` concurrent clients send the same requests: REST POSTs
  `{"instances": [...]}` (TF Serving's row format) from coroutines of one aiohttp session holding a
  connection per client; gRPC calls `PredictionService.Predict` with `tensorflow_serving.apis`'
  own stub, the rows as a TensorProto made by `tf.make_tensor_proto`, as TF Serving's clients do.
  Each client takes the next request from the shared list until none is left. The rows/s and
  requests/s are over the wall time of the whole list; latency is per good request, from sending
  it to reading the whole reply (p50, p90, p99). A warm-up pass of 2 x `--clients` requests comes
  first and is not counted.

A text classifier (one input of a batch of strings) takes its rows from the first 1,000 lines of
`--texts FILE`.

`--malformed F` replaces a seeded fraction F of the requests with bad ones (REST: cut-off JSON, a
row of the wrong shape, an input the signature lacks; gRPC: rows of another dtype, an extra axis,
no rows),
each of which must be answered with TF Serving's error shape: 400 and {"error": one line}, or
INVALID_ARGUMENT with a one-line message. `--swap` drops a new version (a copy of the same
SavedModel, written beside the base path and renamed into it) halfway through each pass: the
server must pick it up with no failed request, and be serving it by the end.

To keep the client's share of the CPU (which it shares with the server) small, each row's JSON is
written once before the clock starts and a request's body only joins its rows' texts; the replies
are parsed and checked after the clock stops. Every good answer is checked against the bare
SavedModel's outputs for the same rows (numbers within 1e-5, strings equal). Wrong, failed (an
error or lost) and badly refused answers are counted and listed on stderr, and the script exits
non-zero if there are any.

Printed, one JSON object per line: the setup, the bare figure, then per protocol its figures, the
server's batching over that pass (requests and rows per model call, from /healthz) and the ratio
of served to bare rows/s with the tail latency's spread (p99 / p50).

    python benchmarks/serving.py SAVED_MODEL [--requests 2000] [--clients 32] [--max-rows 64] [--seed 0]
                                 [--protocol rest|grpc|both] [--texts FILE] [--malformed F] [--swap] [--quick]
"""

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator

import aiohttp
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

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
    spec = specs[next(iter(specs))] if len(specs) == 1 else None
    if spec is None or not (spec.dtype.is_floating or (spec.dtype == tf.string and spec.shape.rank == 1)):
        raise SystemExit(f"{path}: serving_default must take one float tensor or a batch of texts; it takes {specs}")
    return next(iter(specs.items()))


def row_pool(path: str, name: str, spec: tf.TensorSpec, seed: int, texts: str | None) -> tuple[np.ndarray, str]:
    """POOL rows of the signature's shape and dtype, and where they come from."""
    if spec.dtype == tf.string:
        if texts is None:
            raise SystemExit(f"input '{name}' takes texts: pass --texts FILE (one text per line)")
        with open(texts, encoding="utf-8") as file:
            lines = [line.rstrip("\n").encode() for line, _ in zip(file, range(POOL))]
        return np.array(lines, dtype=object), f"the first {len(lines)} lines of {texts}"
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


def drop_version(base: str, export: str, version: int) -> None:
    """Copies the SavedModel and its manifest beside the base path, then renames the copy into it as
    `version`, so the server never sees it half-written."""
    staging = os.path.join(os.path.dirname(base), f"staging-{version}")
    shutil.copytree(os.path.join(export, "saved_model"), os.path.join(staging, "saved_model"))
    if os.path.isfile(os.path.join(export, "manifest.json")):
        shutil.copy(os.path.join(export, "manifest.json"), staging)
    os.rename(staging, os.path.join(base, str(version)))


@contextlib.contextmanager
def serving(base: str, grpc_port: int | None, poll_seconds: float) -> Iterator[str]:
    """The URL of `garden serve MODEL=base [--grpc-port grpc_port]` on a free port once /healthz answers;
    stopped at the end, also on errors. If the server exits before answering, the error holds its output."""
    port = free_port()
    command = ["serve", f"{MODEL}={base}", "--port", str(port)]
    command += ["--grpc-port", str(grpc_port)] if grpc_port else []
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "garden.cli", *command, "--poll-seconds", str(poll_seconds)],
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
    """Each pool row as JSON (float32 values written exactly, so the server reads the same rows)."""
    rows = [row.decode() if isinstance(row, bytes) else row.tolist() for row in pool]
    return [json.dumps(row, separators=(",", ":")).encode() for row in rows]


MALFORMED_JSON = (b'{"instances": [[0.5', b'{"instances": [[0.5, 0.5]]}', b'{"inputs": {"no_such_input": [1]}}')


def rest_body(texts: list[bytes], rows: np.ndarray, bad: int | None) -> bytes:
    """A predict body of `rows`, or the malformed body number `bad`."""
    if bad is not None:
        return MALFORMED_JSON[bad % len(MALFORMED_JSON)]
    return b'{"instances":[' + b",".join(texts[j] for j in rows) + b"]}"


def grpc_request(name: str, batch: np.ndarray, bad: int | None) -> predict_pb2.PredictRequest:
    """A Predict request of `batch`, or (bad given) of rows of another dtype, with an extra axis or none."""
    if bad is not None and bad % 3 == 0:
        batch = np.zeros(batch.shape, np.float32 if batch.dtype == object else np.float64)
    elif bad is not None:
        batch = batch[..., None] if bad % 3 == 1 else batch[:0]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs[name].CopyFrom(tf.make_tensor_proto(batch))
    return request


async def load_rest(url, texts, requests, bad, clients, on_half):
    """(wall seconds, per request (status or None, reply body or error text), per request latency in
    seconds) of `clients` concurrent clients POSTing `requests` (rows as indices into `texts`)."""
    replies, latencies = [None] * len(requests), [0.0] * len(requests)
    pending = iter(range(len(requests)))  # shared: each client takes the next request
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def client() -> None:
            for i in pending:
                if i == len(requests) // 2:
                    await on_half()
                body = rest_body(texts, requests[i], bad.get(i))
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


async def load_grpc(address, name, pool, requests, bad, clients, on_half):
    """As load_rest, over gRPC: replies are ("OK", PredictResponse) or (status code name, details)."""
    replies, latencies = [None] * len(requests), [0.0] * len(requests)
    pending = iter(range(len(requests)))
    options = [("grpc.max_send_message_length", 2**30), ("grpc.max_receive_message_length", 2**30)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def client() -> None:
            for i in pending:
                if i == len(requests) // 2:
                    await on_half()
                request = grpc_request(name, pool[requests[i]], bad.get(i))
                start = time.perf_counter()
                try:
                    replies[i] = ("OK", await stub.Predict(request, timeout=300))
                except grpc.aio.AioRpcError as error:
                    replies[i] = (error.code().name, error.details() or "")
                latencies[i] = time.perf_counter() - start

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        return time.perf_counter() - start, replies, latencies


def differs(name: str, got, want: np.ndarray) -> str:
    """Why output `name` (`got`: a list or an array, a value per row) differs from `want`, or ''."""
    if want.dtype == object or want.dtype.kind == "S":
        decode = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in np.asarray(got).tolist()]
        return "" if decode == [w.decode("utf-8", "replace") for w in want.tolist()] else f"output '{name}' differs"
    try:
        array = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        return f"output '{name}' is not a numeric array"
    if array.shape != want.shape:
        return f"output '{name}' has shape {list(array.shape)}, expected {list(want.shape)}"
    if not np.allclose(array, want, atol=ATOL):
        return f"output '{name}' differs by up to {np.max(np.abs(array - want)):.3g}"
    return ""


def rest_mismatch(body: bytes, expected: dict[str, np.ndarray]) -> str:
    """Why a REST reply's `predictions` (a value per row with one output, a dict per row with several)
    differ from the expected outputs, or '' when they match."""
    try:
        predictions = json.loads(body).get("predictions")
    except (json.JSONDecodeError, AttributeError) as error:
        return f"unreadable reply: {error}"
    count = len(next(iter(expected.values())))
    if not isinstance(predictions, list) or len(predictions) != count:
        return f"expected a list of {count} predictions"
    for name, want in expected.items():
        got = predictions
        if len(expected) > 1:
            got = [row.get(name) if isinstance(row, dict) else None for row in predictions]
        if why := differs(name, got, want):
            return why
    return ""


def grpc_mismatch(reply: predict_pb2.PredictResponse, expected: dict[str, np.ndarray]) -> str:
    if set(reply.outputs) != set(expected):
        return f"outputs {sorted(reply.outputs)}, expected {sorted(expected)}"
    return next(
        (w for name, want in expected.items() if (w := differs(name, tf.make_ndarray(reply.outputs[name]), want))), ""
    )


def refused_right(protocol: str, status, body) -> bool:
    """Whether a malformed request got TF Serving's error shape: 400 with one line in {"error": ...},
    or INVALID_ARGUMENT with a one-line message."""
    if protocol == "grpc":
        return status == "INVALID_ARGUMENT" and bool(body) and "\n" not in body
    try:
        error = json.loads(body)["error"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    return status == 400 and isinstance(error, str) and bool(error) and "\n" not in error


def check(protocol: str, replies: list, expected: list[dict[str, np.ndarray]], bad: dict) -> tuple[int, int, int]:
    """(wrong, failed, badly refused) answers among `replies`, each listed on stderr."""
    wrong = failed = misrefused = 0
    good_status = "OK" if protocol == "grpc" else 200
    for i, (reply, want) in enumerate(zip(replies, expected)):
        status, body = reply or (None, "no answer")
        if i in bad:
            if not refused_right(protocol, status, body):
                misrefused += 1
                print(f"{protocol} request {i} (malformed): answered {status}: {str(body)[:300]}", file=sys.stderr)
        elif status != good_status:
            failed += 1
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
            print(f"{protocol} request {i}: failed ({status}): {text[:300]}", file=sys.stderr)
        elif why := (grpc_mismatch if protocol == "grpc" else rest_mismatch)(body, want):
            wrong += 1
            print(f"{protocol} request {i}: wrong: {why}", file=sys.stderr)
    return wrong, failed, misrefused


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


def wait_for_version(url: str, version: int) -> list[dict]:
    """The model's version statuses once `version` is AVAILABLE (or after a minute)."""
    for _ in range(240):
        statuses = get_json(f"{url}/v1/models/{MODEL}")["model_version_status"]
        if any(s["version"] == str(version) and s["state"] == "AVAILABLE" for s in statuses):
            break
        time.sleep(0.25)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", help="an exported SavedModel folder (garden export RUN --format saved_model)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--protocol", choices=["rest", "grpc", "both"], default="both")
    parser.add_argument("--texts", help="a text model's rows: a file of one text per line")
    parser.add_argument("--malformed", type=float, default=0.0, help="the fraction of requests made malformed")
    parser.add_argument("--swap", action="store_true", help="drop a new version into the base path mid-pass")
    parser.add_argument("--quick", action="store_true", help="200 requests, 8 clients: proves the script works")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # stops the server too
    count, clients = (200, 8) if args.quick else (args.requests, args.clients)
    path = os.path.abspath(args.saved_model)
    signature = tf.saved_model.load(path).signatures["serving_default"]
    name, spec = signature_input(signature, path)
    pool, source = row_pool(path, name, spec, args.seed, args.texts)
    requests = request_rows(count, args.max_rows, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    bad = {int(i): n for n, i in enumerate(np.flatnonzero(rng.random(count) < args.malformed))}
    good = [i for i in range(count) if i not in bad]
    rows = sum(len(requests[i]) for i in good)
    setup = {"requests": count, "malformed": len(bad), "clients": clients, "max_rows": args.max_rows, "rows": rows}
    setup |= {"cpu_cores": os.cpu_count(), "saved_model": path, "input": name, "shape": spec.shape.as_list()}
    print(json.dumps({**setup, "data": source, "swap": args.swap}), flush=True)

    bare, expected = bare_outputs(signature, name, [pool[r] for r in requests])
    print(json.dumps({"system": "bare SavedModel", "rows_per_second": round(bare, 1)}), flush=True)

    texts = row_texts(pool)
    protocols = ["rest", "grpc"] if args.protocol == "both" else [args.protocol]
    grpc_port, failures = free_port(), 0
    with tempfile.TemporaryDirectory() as folder:
        base = os.path.join(folder, MODEL)
        os.makedirs(base)
        drop_version(base, os.path.dirname(path), 1)
        with serving(base, grpc_port if "grpc" in protocols else None, 0.2 if args.swap else 1.0) as url:
            for number, protocol in enumerate(protocols):
                version = number + 2

                async def on_half(version=version) -> None:
                    if args.swap:
                        await asyncio.to_thread(drop_version, base, os.path.dirname(path), version)

                async def nothing() -> None:
                    pass

                def run(subset, on_half, bad, protocol=protocol):
                    if protocol == "grpc":
                        return load_grpc(f"127.0.0.1:{grpc_port}", name, pool, subset, bad, clients, on_half)
                    return load_rest(url, texts, subset, bad, clients, on_half)

                asyncio.run(run(requests[: 2 * clients], nothing, {}))  # warm up
                before = get_json(url + "/healthz")
                seconds, replies, latencies = asyncio.run(run(requests, on_half, bad))
                health = get_json(url + "/healthz")
                wrong, failed, misrefused = check(protocol, replies, expected, bad)
                served = served_figures(rows, seconds, [latencies[i] for i in good])
                row = {"system": f"garden serve ({protocol})", **served, "wrong": wrong, "failed": failed}
                print(json.dumps({**row, "malformed_refused_wrongly": misrefused}), flush=True)
                calls = max(health["model_calls"] - before["model_calls"], 1)
                batching = {
                    "requests_per_model_call": round(
                        (health["predict_requests"] - before["predict_requests"]) / calls, 2
                    ),
                    "rows_per_model_call": round(rows / calls, 1),
                }
                if args.swap:
                    statuses = wait_for_version(url, version)
                    batching["versions_after_swap"] = {s["version"]: s["state"] for s in statuses}
                    failed += statuses[-1]["version"] != str(version) or statuses[-1]["state"] != "AVAILABLE"
                print(json.dumps({"protocol": protocol, **batching}), flush=True)
                ratio = {
                    "protocol": protocol,
                    "ratio_server_to_bare_rows": round(served["rows_per_second"] / bare, 3),
                    "p99_over_p50": round(served["p99_ms"] / served["p50_ms"], 2),
                }
                print(json.dumps(ratio), flush=True)
                failures += wrong + failed + misrefused
    if failures:
        raise SystemExit(f"{failures} wrong, failed or badly refused answers (listed above)")


if __name__ == "__main__":
    main()

"""`garden serve`: TF Serving's REST API on 127.0.0.1, exercised as a TF Serving client would."""

import base64
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, garden

from garden.data.mnist import mnist

MAX_BYTES = 200_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_run, text_run, tmp_path_factory):
    exports = tmp_path_factory.mktemp("serve")
    for name, run in (("mnist", tiny_run), ("r8", text_run)):
        garden("export", run, "--format", "saved_model", "--out", exports / name)
    limits = ["--max-request-bytes", str(MAX_BYTES), "--max-instances", "64"]
    models = [f"digits={exports / 'mnist' / 'saved_model'}", str(exports / "r8" / "saved_model")]
    with serving(*models, *limits, log=exports / "server.log") as url:
        yield url, exports


@contextlib.contextmanager
def serving(*args, log=None):
    """The URL of `garden serve *args` on a free port, once it answers; stopped at the end. The
    server's output goes to the file `log` (a temporary one when None)."""
    port = free_port()
    with open(log, "w+") if log else tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "garden.cli", "serve", *args, "--port", str(port)],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1)
                    break
                except OSError:
                    if process.poll() is not None:
                        output.seek(0)
                        raise AssertionError(output.read()) from None
                    time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def call(url, path, body=None):
    """(status, JSON reply) of a GET (body None) or a POST of `body` (bytes or a JSON-able value)."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data=data), timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def saved_model(exports, name, signature="serving_default"):
    return tf.saved_model.load(str(exports / name / "saved_model")).signatures[signature]


def test_serving_benchmark_answers_every_concurrent_request_as_the_saved_model_does(server):
    """benchmarks/serving.py --quick: 200 requests of 1-64 MNIST rows from 8 clients, each answer
    checked against the bare SavedModel's outputs (the script exits 1 on a wrong or lost one)."""
    _, exports = server
    result = subprocess.run(
        [sys.executable, "benchmarks/serving.py", str(exports / "mnist" / "saved_model"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    served = next(row for row in printed if row.get("system") == "garden serve")
    assert served["wrong"] == served["failed"] == 0 and 0 < served["p50_ms"] <= served["p99_ms"]
    assert printed[-1]["ratio_server_to_bare_rows"] > 0


def test_status_metadata_and_health(server):
    url, _ = server
    assert call(url, "/v1/models/r8_minilm") == (
        200,
        {
            "model_version_status": [
                {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            ]
        },
    )
    status, metadata = call(url, "/v1/models/digits/metadata")
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and metadata["model_spec"]["name"] == "digits"
    assert signatures["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in signatures["serving_default"]["inputs"]["image"]["tensor_shape"]["dim"]] == [
        "-1",
        "28",
        "28",
        "1",
    ]
    assert call(url, "/healthz")[1]["models"] == ["digits", "r8_minilm"]
    assert call(url, "/v1/models/r9")[0] == 404


def test_row_and_columnar_predictions_match_the_saved_model(server):
    url, exports = server
    texts = ["wheat and grain exports rose sharply", "the company agreed to acquire the bank for cash"]
    expected = saved_model(exports, "r8")(text=tf.constant(texts))
    status, rows = call(url, "/v1/models/r8_minilm:predict", {"instances": texts})
    assert status == 200 and [r["class_id"] for r in rows["predictions"]] == expected["class_id"].numpy().tolist()
    assert [r["label"] for r in rows["predictions"]] == [x.decode() for x in expected["label"].numpy()]
    status, columns = call(url, "/v1/models/r8_minilm/versions/1:predict", {"inputs": {"text": texts}})
    np.testing.assert_allclose(columns["outputs"]["probabilities"], expected["probabilities"], atol=1e-6)
    tokens = {"token_ids": [101, 7592, 102, 0], "segment_ids": [0, 0, 0, 0], "padding_mask": [1, 1, 1, 0]}
    status, reply = call(
        url, "/v1/models/r8_minilm:predict", {"signature_name": "serving_tokens", "instances": [tokens]}
    )
    assert status == 200 and len(reply["predictions"][0]["probabilities"]) == 8


def test_images_as_tensors_and_as_base64_png(server):
    url, exports = server
    pixels = np.round(mnist("test").features["image"][:3] * 255).astype(np.uint8)
    pngs = [{"b64": base64.b64encode(tf.io.encode_png(image).numpy()).decode()} for image in pixels]
    status, encoded = call(url, "/v1/models/digits:predict", {"signature_name": "serving_bytes", "instances": pngs})
    status_tensors, tensors = call(url, "/v1/models/digits:predict", {"instances": (pixels / 255.0).tolist()})
    assert status == status_tensors == 200
    assert [r["class_id"] for r in encoded["predictions"]] == [r["class_id"] for r in tensors["predictions"]]


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("r8_minilm", b'{"instances": ["unclosed"', "malformed JSON"),
        ("r8_minilm", {"instances": [1, 2]}, "input 'text' takes strings"),
        ("r8_minilm", {"instances": []}, '"instances" must be a non-empty list'),
        ("r8_minilm", {"inputs": {"text": []}}, "the request holds no instances"),
        ("r8_minilm", {"instances": ["a"], "inputs": ["b"]}, 'either "instances" (row format) or "inputs"'),
        ("r8_minilm", {"instances": ["x"] * 65}, "more than 64 instances"),
        ("r8_minilm", {"instances": ["x" * (MAX_BYTES + 1)]}, f"over {MAX_BYTES} bytes"),
        (
            "r8_minilm",
            {"signature_name": "serving_tokens", "instances": [{"token_ids": [1]}]},
            "takes inputs padding_mask, segment_ids, token_ids",
        ),
        ("r8_minilm", {"signature_name": "classify", "instances": ["x"]}, "no signature 'classify'"),
        (
            "digits",
            {"instances": [[[0.5] * 27] * 28]},
            "input 'image' has shape [1, 28, 27] but the signature takes [N, 28, 28, 1]",
        ),
        ("digits", {"instances": [[[[0.5]] * 28] * 28, [[0.5]]]}, "not a rectangular array"),
        ("digits", {"instances": [[[[float("nan")]] * 28] * 28]}, "input 'image' holds NaN or infinite values"),
        ("digits", {"instances": [[[[1e39]] * 28] * 28]}, "input 'image' holds NaN or infinite values"),
        (
            "digits",
            {"instances": [[[[200.0]] * 28] * 28]},
            "input 'image' takes values in [0, 1]; got values from 200 to 200 (divide 0-255 pixels by 255)",
        ),
        ("digits", {"signature_name": "serving_bytes", "instances": [{"b64": "not base64!"}]}, "invalid base64"),
        (
            "digits",
            {"signature_name": "serving_bytes", "instances": [{"b64": "aGVsbG8="}]},
            "Unknown image file format",
        ),
    ],
)
def test_bad_requests_get_400_with_one_line_and_the_server_keeps_serving(server, path, body, message):
    url, _ = server
    status, reply = call(url, f"/v1/models/{path}:predict", body)
    assert status == 400 and message in reply["error"] and "\n" not in reply["error"], reply
    assert call(url, "/v1/models/r8_minilm:predict", {"instances": ["oil prices"]})[0] == 200


def test_a_burst_of_concurrent_requests_is_batched_and_every_reply_is_right(server):
    url, exports = server
    texts = [
        f"{word} prices and {other} output changed"
        for word in ("oil", "wheat", "gold", "coffee")
        for other in ("crude", "grain", "ship", "bank")
    ]
    requests = [texts[i % len(texts) : i % len(texts) + 1 + i % 3] for i in range(96)]
    expected = saved_model(exports, "r8")(text=tf.constant(texts + texts))["class_id"].numpy().tolist()
    before = call(url, "/healthz")[1]
    with ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(
            pool.map(lambda batch: call(url, "/v1/models/r8_minilm:predict", {"instances": batch}), requests)
        )
    after = call(url, "/healthz")[1]
    for i, (status, reply) in enumerate(replies):
        start = i % len(texts)
        assert (
            status == 200
            and [r["class_id"] for r in reply["predictions"]] == expected[start : start + len(requests[i])]
        )
    assert after["predict_requests"] - before["predict_requests"] == len(requests)
    assert after["model_calls"] - before["model_calls"] < len(requests)  # concurrent requests shared model calls


def test_unknown_paths_deep_json_and_scalar_inputs_get_json_errors(server):
    url, exports = server
    for path, body, status, message in (
        ("/v1/models/r8_minilm:classify", {"examples": []}, 404, "Not Found: POST /v1/models/r8_minilm:classify"),
        ("/v1/models", None, 404, "Not Found: GET /v1/models"),
        ("/v1/models/r8_minilm:predict", b"[" * 50_000 + b"]" * 50_000, 400, "the JSON is nested too deeply"),
        (
            "/v1/models/r8_minilm:predict",
            {"inputs": {"text": "one"}},
            400,
            "must be a list with one entry per instance",
        ),
    ):
        got, reply = call(url, path, body)
        assert (got, reply["error"].startswith(message) or message in reply["error"]) == (status, True), reply
    assert call(url, "/v1/models/r8_minilm:predict", {"instances": ["oil prices"]})[0] == 200
    port = url.rsplit(":", 1)[1]
    result = garden("serve", exports / "r8" / "saved_model", "--port", port, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().startswith(f"garden: error: cannot listen on 127.0.0.1:{port}")


def test_a_client_that_hangs_up_mid_request_costs_one_log_line_and_no_traceback(server):
    url, exports = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(
            b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b'{"instances": ['
        )  # then hangs up, its body unsent
    status, reply = call(url, "/v1/models/digits:predict", {"instances": np.zeros([1, 28, 28, 1]).tolist()})
    assert status == 200 and len(reply["predictions"]) == 1
    for _ in range(20):  # the server notices the hang-up on its own time
        log = (exports / "server.log").read_text()
        if "hung up" in log:
            break
        time.sleep(0.5)
    assert "Traceback" not in log and "hung up during POST /v1/models/digits:predict" in log, log

"""`garden serve`: TF Serving's REST and gRPC APIs on 127.0.0.1, exercised as TF Serving's clients
would (gRPC through `tensorflow_serving.apis`' own stubs), its Prometheus metrics, and new versions
swapped in while it serves."""

import base64
import collections
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, garden
from prometheus_client.parser import text_string_to_metric_families
from tensorflow.core.framework import types_pb2
from tensorflow.core.framework.tensor_pb2 import TensorProto
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from garden.config import TokenizerConfig
from garden.data.mnist import mnist
from garden.data.tokenizers import build_tokenizer
from garden.export.decoder import write_saved_model
from garden.export.model_config import ALL_VERSIONS, read_model_config
from garden.export.serve import model_name
from garden.generate.generator import Generator
from garden.generate.sampler import Sampling
from garden.models.backbones.decoder import DecoderBackbone

MAX_BYTES = 200_000


MODEL_CONFIG = """
model_config_list {{
  config {{
    name: "digits"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ {policy} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# REST URL, the exports, gRPC host:port, and the Generator of the served language model
Server = collections.namedtuple("Server", "url exports grpc generator")


@pytest.fixture(scope="module")
def server(tiny_run, text_run, tmp_path_factory):
    exports = tmp_path_factory.mktemp("serve")
    for name, run in (("mnist", tiny_run), ("r8", text_run)):
        garden("export", run, "--format", "saved_model", "--out", exports / name)
    keras.utils.set_random_seed(0)
    decoder = DecoderBackbone(num_layers=1, num_heads=2, num_key_value_heads=1, hidden_dim=32, intermediate_dim=48)
    tokenizer = build_tokenizer("decoder", TokenizerConfig())
    write_saved_model(decoder, tokenizer, str(exports / "lm"), max_length=64)
    limits = ["--max-request-bytes", str(MAX_BYTES), "--max-instances", "64"]
    models = [f"digits={exports / 'mnist' / 'saved_model'}", str(exports / "r8" / "saved_model")]
    models.append(f"lm={exports / 'lm'}")
    grpc_port = free_port()
    with serving(*models, *limits, "--grpc-port", str(grpc_port), log=exports / "server.log") as url:
        yield Server(url, exports, f"127.0.0.1:{grpc_port}", Generator(decoder, tokenizer))


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


def streamed_events(url, path, body):
    """The JSON events of a server-sent event stream, read as they come."""
    request = urllib.request.Request(url + path, data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as reply:
        assert reply.headers["Content-Type"].startswith("text/event-stream")
        return [json.loads(line[len(b"data: ") :]) for line in reply if line.startswith(b"data: ")]


def saved_model(exports, name, signature="serving_default"):
    return tf.saved_model.load(str(exports / name / "saved_model")).signatures[signature]


def test_serving_benchmark_answers_every_concurrent_request_as_the_saved_model_does(server):
    """benchmarks/serving.py --quick over REST and gRPC: 200 requests of 1-64 MNIST rows from 8 clients,
    one in ten malformed, a new version dropped in halfway through each pass; every good answer is
    checked against the bare SavedModel's outputs and every bad one for TF Serving's error shape (the
    script exits 1 on a wrong, lost or badly refused one)."""
    exports = server.exports
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/serving.py",
            str(exports / "mnist" / "saved_model"),
            "--quick",
            "--malformed",
            "0.1",
            "--swap",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert printed[0]["malformed"] > 10
    for protocol, version in (("rest", "2"), ("grpc", "3")):
        served = next(row for row in printed if row.get("system") == f"garden serve ({protocol})")
        assert served["wrong"] == served["failed"] == served["malformed_refused_wrongly"] == 0
        assert 0 < served["p50_ms"] <= served["p99_ms"]
        swapped = next(row for row in printed if row.get("protocol") == protocol and "versions_after_swap" in row)
        assert swapped["versions_after_swap"][version] == "AVAILABLE"
        assert (
            next(r for r in printed if "ratio_server_to_bare_rows" in r and r["protocol"] == protocol)[
                "ratio_server_to_bare_rows"
            ]
            > 0
        )


def test_status_metadata_and_health(server):
    url = server.url
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
    assert call(url, "/healthz")[1]["models"] == ["digits", "lm", "r8_minilm"]
    assert call(url, "/v1/models/r9")[0] == 404


def test_an_export_folder_its_saved_model_and_a_base_path_of_exports_take_the_experiments_name(server, tmp_path):
    """`garden serve RUN/export` (as the README shows it) names the model by the experiment trained
    (tiny_run's mnist_resnet), as RUN/export/saved_model and a base path of such exports do; a
    SavedModel with no manifest keeps its folder's name."""
    export = server.exports / "mnist"
    base = tmp_path / "digits"
    shutil.copytree(export, base / "3", ignore=shutil.ignore_patterns("*.tflite"))
    (base / "12").mkdir()  # the newest version: its manifest names the model
    shutil.copytree(export / "saved_model", base / "12" / "saved_model")
    shutil.copy(export / "manifest.json", base / "12")
    bare = tmp_path / "bare"
    shutil.copytree(export / "saved_model", bare / "1")
    for path, name in ((export, "mnist_resnet"), (export / "saved_model", "mnist_resnet"), (base, "mnist_resnet")):
        assert model_name(str(path)) == name, path
    assert (model_name(str(bare)), model_name(str(bare / "1"))) == ("bare", "1")


def test_row_and_columnar_predictions_match_the_saved_model(server):
    url, exports = server.url, server.exports
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
    url = server.url
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
    url = server.url
    status, reply = call(url, f"/v1/models/{path}:predict", body)
    assert status == 400 and message in reply["error"] and "\n" not in reply["error"], reply
    assert call(url, "/v1/models/r8_minilm:predict", {"instances": ["oil prices"]})[0] == 200


def test_a_burst_of_concurrent_requests_is_batched_and_every_reply_is_right(server):
    url, exports = server.url, server.exports
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


def test_generate_serves_row_wise_instances_each_sampled_as_alone_in_shared_model_calls(server):
    """TF Serving's row format for the `generate` signature: every instance carries its own
    settings, concurrent requests share model calls, and each row gets what Keras gives it alone."""
    rows = [
        dict(prompt="ROMEO:", max_new_tokens=12, seed=0, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0),
        dict(prompt="Enter", max_new_tokens=20, seed=3, temperature=0.9, top_k=20, top_p=1.0, repetition_penalty=1.0),
        dict(prompt="O, be", max_new_tokens=8, seed=7, temperature=1.0, top_k=0, top_p=0.9, repetition_penalty=1.3),
    ]
    stops = [["\n", ""], ["e", "o"], ["", ""]]  # the same number per instance; "" pads
    instances = [{**row, "stop": stop} for row, stop in zip(rows, stops)]
    expected = [
        server.generator.generate(
            [row["prompt"]],
            row["max_new_tokens"],
            Sampling(**{k: row[k] for k in ("temperature", "top_k", "top_p", "repetition_penalty")}),
            seed=row["seed"],
            stop=[s for s in stop if s],
        )[0]
        for row, stop in zip(rows, stops)
    ]
    status, reply = call(server.url, "/v1/models/lm:predict", {"signature_name": "generate", "instances": instances})
    assert status == 200 and reply["predictions"] == expected  # one output: TF Serving lists its values
    before = call(server.url, "/healthz")[1]
    with ThreadPoolExecutor(max_workers=12) as pool:
        replies = list(
            pool.map(lambda i: call(server.url, "/v1/models/lm:predict", {"instances": [instances[i % 3]]}), range(24))
        )
    after = call(server.url, "/healthz")[1]
    assert all(reply == (200, {"predictions": [expected[i % 3]]}) for i, reply in enumerate(replies))
    assert after["model_calls"] - before["model_calls"] < len(replies)  # rows of other settings shared calls
    dtypes = {"prompt": object, "stop": object, "max_new_tokens": np.int32, "seed": np.int32, "top_k": np.int32}
    columns = {name: np.array([i[name] for i in instances], dtypes.get(name, np.float32)) for name in instances[0]}
    predictions, _ = grpc_stubs(server)
    reply = grpc_predict(predictions, "lm", columns, signature="generate")  # TF Serving's own gRPC client
    assert [t.decode("utf-8", errors="replace") for t in tf.make_ndarray(reply.outputs["text"])] == expected
    for row in (1, 2):  # streamed: server-sent events of whole characters, through the decode step
        events = streamed_events(server.url, "/v1/models/lm:predict", {"stream": True, "instances": [instances[row]]})
        assert events[-1] == {"done": True} and len(events) > 3, events
        assert "".join(event["text"] for event in events[:-1]) == expected[row]
    status, reply = call(server.url, "/v1/models/lm:predict", {"stream": True, "instances": instances[:2]})
    assert status == 400 and "a streamed request holds one instance, not 2" in reply["error"]
    long = {**instances[0], "max_new_tokens": 60}
    status, reply = call(server.url, "/v1/models/lm:predict", {"stream": True, "instances": [long]})
    assert status == 400 and "exceed the 64 tokens of this model's decode step" in reply["error"], reply
    ragged = [{**instances[0], "stop": ["\n"]}, instances[1]]
    status, reply = call(server.url, "/v1/models/lm:predict", {"instances": ragged})
    assert status == 400 and "input 'stop' is not a rectangular array" in reply["error"]
    status, reply = call(server.url, "/v1/models/lm:predict", {"instances": [{**instances[0], "top_p": 1.5}]})
    assert status == 400 and "top_p must be in (0, 1]" in reply["error"], reply


def test_a_streamed_generation_stops_sampling_when_its_client_hangs_up(server):
    """The sampler runs at most two pieces ahead of what the client was sent: a client that reads one
    piece and hangs up stops it, where the whole stream samples every piece (the counter says so)."""

    def sampled():
        return sum(
            value
            for (name, labels), value in metric_samples(server.url).items()
            if name == "garden_serving_streamed_pieces_total" and dict(labels)["model"] == "lm"
        )

    row = dict(prompt="O", max_new_tokens=60, seed=1, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    body = {"stream": True, "instances": [{**row, "stop": [""]}]}
    before = sampled()
    whole = streamed_events(server.url, "/v1/models/lm:predict", body)
    assert whole[-1] == {"done": True} and sampled() - before == len(whole) - 1 >= 30, whole
    before = sampled()
    request = urllib.request.Request(server.url + "/v1/models/lm:predict", data=json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=60) as reply:
        assert reply.readline().startswith(b"data: {")  # one piece, then the connection closes
    counts = [sampled()]
    while len(counts) < 4 or counts[-1] != counts[-4]:  # settled: unchanged over three reads
        time.sleep(0.1)
        counts.append(sampled())
        assert len(counts) < 100, counts
    assert counts[-1] - before <= (len(whole) - 1) // 2, (counts, len(whole))


def test_unknown_paths_deep_json_and_scalar_inputs_get_json_errors(server):
    url, exports = server.url, server.exports
    for path, body, status, message in (
        ("/v1/models/r8_minilm:explain", {"instances": []}, 404, "Not Found: POST /v1/models/r8_minilm:explain"),
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
    url, exports = server.url, server.exports
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


def grpc_stubs(server):
    channel = grpc.insecure_channel(server.grpc)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def grpc_predict(stub, model, inputs, signature="", version=None, output_filter=()):
    """A stock PredictionService.Predict call, as TF Serving's own Python clients make it."""
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name, request.model_spec.signature_name = model, signature
    if version is not None:
        request.model_spec.version.value = version
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(value if isinstance(value, TensorProto) else tf.make_tensor_proto(value))
    return stub.Predict(request, timeout=60)


def test_grpc_answers_as_rest_does_through_tf_servings_own_client_stubs(server):
    predictions, models = grpc_stubs(server)
    images = mnist("test").features["image"][:5]
    reply = grpc_predict(predictions, "digits", {"image": images})
    status, rest = call(server.url, "/v1/models/digits:predict", {"inputs": images.tolist()})
    assert status == 200 and set(reply.outputs) == set(rest["outputs"])
    np.testing.assert_allclose(
        tf.make_ndarray(reply.outputs["probabilities"]), rest["outputs"]["probabilities"], atol=1e-6
    )
    assert [x.decode() for x in tf.make_ndarray(reply.outputs["label"])] == rest["outputs"]["label"]
    assert (reply.model_spec.name, reply.model_spec.version.value) == ("digits", 1)
    assert reply.model_spec.signature_name == "serving_default"

    texts = ["wheat and grain exports rose sharply", "the company agreed to acquire the bank for cash"]
    reply = grpc_predict(predictions, "r8_minilm", {"text": np.array(texts, dtype=object)}, output_filter=["label"])
    expected = saved_model(server.exports, "r8")(text=tf.constant(texts))
    assert list(reply.outputs) == ["label"]
    np.testing.assert_array_equal(tf.make_ndarray(reply.outputs["label"]), expected["label"].numpy())

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "digits"
    signatures = get_model_metadata_pb2.SignatureDefMap()
    predictions.GetModelMetadata(request, timeout=60).metadata["signature_def"].Unpack(signatures)
    rest_signatures = call(server.url, "/v1/models/digits/metadata")[1]["metadata"]["signature_def"]["signature_def"]
    assert set(signatures.signature_def) == set(rest_signatures)
    for name, signature in signatures.signature_def.items():
        for key, info in signature.inputs.items():
            assert types_pb2.DataType.Name(info.dtype) == rest_signatures[name]["inputs"][key]["dtype"]

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "r8_minilm"
    (version,) = models.GetModelStatus(request, timeout=60).model_version_status
    assert (version.version, get_model_status_pb2.ModelVersionStatus.State.Name(version.state)) == (1, "AVAILABLE")


def bad_tensor():
    proto = tf.make_tensor_proto(np.zeros([1, 28, 28, 1], np.float32))
    proto.tensor_content = proto.tensor_content[:-4]  # one value short of the shape
    return proto


@pytest.mark.parametrize(
    "model, inputs, extra, code, message",
    [
        (
            "digits",
            {"image": np.zeros([1, 28, 28, 1])},
            {},
            "INVALID_ARGUMENT",
            "takes DT_FLOAT tensors, got DT_DOUBLE",
        ),
        (
            "digits",
            {"image": np.zeros([1, 28, 27], np.float32)},
            {},
            "INVALID_ARGUMENT",
            "has shape [1, 28, 27] but the signature takes [N, 28, 28, 1]",
        ),
        ("digits", {"image": np.full([1, 28, 28, 1], np.nan, np.float32)}, {}, "INVALID_ARGUMENT", "NaN or infinite"),
        ("digits", {"image": np.full([1, 28, 28, 1], 200, np.float32)}, {}, "INVALID_ARGUMENT", "divide 0-255 pixels"),
        ("digits", {"image": bad_tensor()}, {}, "INVALID_ARGUMENT", "input 'image' is not a readable TensorProto"),
        ("digits", {"pixels": np.zeros([1, 28, 28, 1], np.float32)}, {}, "INVALID_ARGUMENT", "takes inputs image"),
        (
            "digits",
            {"image": np.zeros([1, 28, 28, 1], np.float32)},
            {"output_filter": ["logits"]},
            "INVALID_ARGUMENT",
            "output_filter names logits",
        ),
        ("r8_minilm", {"text": np.array(["x"], object)}, {"signature": "classify"}, "INVALID_ARGUMENT", "no signature"),
        ("r9", {"text": np.array(["x"], object)}, {}, "NOT_FOUND", "Servable not found for request: Latest(r9)"),
        (
            "digits",
            {"image": np.zeros([1, 28, 28, 1], np.float32)},
            {"version": 2},
            "NOT_FOUND",
            "Specific(digits, 2)",
        ),
    ],
)
def test_bad_grpc_requests_get_tf_servings_codes_with_one_line(server, model, inputs, extra, code, message):
    predictions, _ = grpc_stubs(server)
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(predictions, model, inputs, **extra)
    assert caught.value.code().name == code and message in caught.value.details(), caught.value.details()
    assert "\n" not in caught.value.details()
    assert grpc_predict(predictions, "digits", {"image": np.zeros([1, 28, 28, 1], np.float32)}).outputs


def metric_samples(url):
    with urllib.request.urlopen(url + "/monitoring/prometheus/metrics", timeout=60) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_counts_each_request_by_model_version_protocol_and_status(server):
    predictions, _ = grpc_stubs(server)
    zeros = np.zeros([3, 28, 28, 1], np.float32)
    before = metric_samples(server.url)
    for _ in range(4):
        assert call(server.url, "/v1/models/digits:predict", {"instances": zeros.tolist()})[0] == 200
    assert call(server.url, "/v1/models/digits:predict", {"instances": [[1.0]]})[0] == 400
    grpc_predict(predictions, "digits", {"image": zeros})
    with pytest.raises(grpc.RpcError):
        grpc_predict(predictions, "digits", {"image": zeros.astype(np.float64)})
    after = metric_samples(server.url)

    def counted(protocol, status, name="garden_serving_requests_total"):
        labels = (("api", "predict"), ("model", "digits"), ("protocol", protocol), ("status", status), ("version", "1"))
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert (
        counted("rest", "200"),
        counted("rest", "400"),
        counted("grpc", "OK"),
        counted("grpc", "INVALID_ARGUMENT"),
    ) == (
        4,
        1,
        1,
        1,
    )
    latency = (("api", "predict"), ("model", "digits"), ("protocol", "rest"), ("version", "1"))
    assert after[("garden_serving_request_latency_seconds_count", latency)] >= 5
    rows = (("model", "digits"), ("version", "1"))
    called = after[("garden_serving_batch_rows_count", rows)] - before.get(("garden_serving_batch_rows_count", rows), 0)
    summed = after[("garden_serving_batch_rows_sum", rows)] - before.get(("garden_serving_batch_rows_sum", rows), 0)
    assert 1 <= called <= 5 and summed == 15  # five good requests of 3 rows, however they were batched


def test_new_versions_are_served_without_a_restart_and_a_broken_one_leaves_the_others_serving(server, tmp_path):
    """TF Serving's base path, its two newest versions served and version 1 labelled `stable`: version
    2 dropped in and picked up by polling, version 3 broken (its failure in the status, 1 and 2 still
    answering), version 4 unloading version 1 (and with it the label's target)."""
    base = tmp_path / "digits"
    shutil.copytree(server.exports / "mnist", base / "1", ignore=shutil.ignore_patterns("*.tflite"))

    def drop(version):  # copied beside the base path, then renamed in: never read half-written
        shutil.copytree(base / "1", tmp_path / "staging")
        (tmp_path / "staging").rename(base / str(version))

    grpc_port = free_port()
    images = mnist("test").features["image"][:4]
    expected = saved_model(server.exports, "mnist")(image=tf.constant(images))["probabilities"].numpy()
    config = tmp_path / "models.config"  # TF Serving's own model config file
    config.write_text(MODEL_CONFIG.format(base=base, policy="latest { num_versions: 2 }"))
    serve_args = ["--model-config-file", str(config), "--poll-seconds", "0.2", "--grpc-port", str(grpc_port)]
    with serving(*serve_args) as url:
        assert wait_for(url, lambda s: True) == [("1", "AVAILABLE", "")]
        drop(2)
        assert wait_for(url, lambda s: ("2", "AVAILABLE") in s) == [("1", "AVAILABLE", ""), ("2", "AVAILABLE", "")]
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        reply = grpc_predict(stub, "digits", {"image": images})
        assert reply.model_spec.version.value == 2
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["probabilities"]), expected, atol=1e-6)
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.version_label = "digits", "stable"
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
        assert stub.Predict(request, timeout=60).model_spec.version.value == 1
        assert call(url, "/v1/models/digits/labels/stable/metadata")[1]["model_spec"]["version"] == "1"
        assert call(url, "/v1/models/digits/versions/1:predict", {"instances": images.tolist()})[0] == 200

        (base / "3").mkdir()
        (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
        statuses = wait_for(url, lambda s: any(v == "3" for v, _ in s))
        assert [s[:2] for s in statuses] == [("1", "AVAILABLE"), ("2", "AVAILABLE"), ("3", "END")] and statuses[2][2]
        rest = {
            v["version"]: v["status"]["error_code"] for v in call(url, "/v1/models/digits")[1]["model_version_status"]
        }
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "digits"
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        versions = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=60)
        codes = {str(v.version): error_codes_pb2.Code.Name(v.status.error_code) for v in versions.model_version_status}
        assert rest["3"] == codes["3"] == "UNKNOWN" and rest["2"] == codes["2"] == "OK"  # the same in both APIs
        status, reply = call(url, "/v1/models/digits:predict", {"instances": images.tolist()})
        assert status == 200 and np.allclose([r["probabilities"] for r in reply["predictions"]], expected, atol=1e-6)

        drop(4)
        statuses = wait_for(url, lambda s: ("4", "AVAILABLE") in s)
        assert [s[:2] for s in statuses] == [("1", "END"), ("2", "AVAILABLE"), ("3", "END"), ("4", "AVAILABLE")]
        assert grpc_predict(stub, "digits", {"image": images}).model_spec.version.value == 4
        for path, message in (
            ("/labels/stable:predict", "Label(digits, stable): version 1 is not loaded"),
            ("/versions/1:predict", "Specific(digits, 1) is not loaded"),
            ("/labels/canary:predict", "--version-label digits:canary=N"),
        ):
            status, reply = call(url, "/v1/models/digits" + path, {"instances": images.tolist()})
            assert status == 404 and message in reply["error"], reply


def wait_for(url, condition):
    """The model's (version, state, error) statuses once `condition` holds of them (within a minute)."""
    for _ in range(300):
        statuses = [
            (s["version"], s["state"], s["status"]["error_message"])
            for s in call(url, "/v1/models/digits")[1]["model_version_status"]
        ]
        if condition([s[:2] for s in statuses]):
            return statuses
        time.sleep(0.2)
    raise AssertionError(f"the statuses stayed {statuses}")


def test_classify_takes_tf_examples_over_rest_and_grpc_as_predict_scores_them(server):
    """TF Serving's Classify on the exported serve_examples signature: every class with its name and
    the probability Predict gives; a context's features go to each example."""
    texts = ["wheat and grain exports rose sharply", "the company agreed to acquire the bank for cash"]
    expected = saved_model(server.exports, "r8")(text=tf.constant(texts))["probabilities"].numpy()
    labels = json.loads((server.exports / "r8" / "manifest.json").read_text())["labels"]
    status, reply = call(server.url, "/v1/models/r8_minilm:classify", {"examples": [{"text": t} for t in texts]})
    assert status == 200 and [[name for name, _ in row] for row in reply["result"]] == [labels, labels]
    np.testing.assert_allclose([[p for _, p in row] for row in reply["result"]], expected, atol=1e-6)

    predictions, _ = grpc_stubs(server)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "r8_minilm"
    for text in texts:
        request.input.example_list.examples.add().features.feature["text"].bytes_list.value.append(text.encode())
    result = predictions.Classify(request, timeout=60).result.classifications
    assert [[c.label for c in row.classes] for row in result] == [labels, labels]
    np.testing.assert_allclose([[c.score for c in row.classes] for row in result], expected, atol=1e-6)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "r8_minilm"
    request.input.example_list_with_context.context.features.feature["text"].bytes_list.value.append(texts[1].encode())
    request.input.example_list_with_context.examples.add()
    request.input.example_list_with_context.examples.add().features.feature["text"].bytes_list.value.append(b"x")
    first, second = predictions.Classify(request, timeout=60).result.classifications
    np.testing.assert_allclose([c.score for c in first.classes], expected[1], atol=1e-6)  # the context's text
    assert not np.allclose([c.score for c in second.classes], expected[1], atol=1e-6)  # its own text wins

    pixels = np.round(mnist("test").features["image"][:2] * 255).astype(np.uint8)
    pngs = [{"image_bytes": {"b64": base64.b64encode(tf.io.encode_png(p).numpy()).decode()}} for p in pixels]
    status, reply = call(server.url, "/v1/models/digits:classify", {"examples": pngs})
    status_predict, predicted = call(server.url, "/v1/models/digits:predict", {"instances": (pixels / 255).tolist()})
    assert status == status_predict == 200
    best = [max(row, key=lambda pair: pair[1])[0] for row in reply["result"]]
    assert best == [row["label"] for row in predicted["predictions"]]

    for path, body, message in (
        ("r8_minilm:classify", {"examples": [{"words": "oil"}]}, "Feature: text (data type: string) is required"),
        ("r8_minilm:classify", {"examples": [{"text": 3}]}, "feature 'text' takes strings"),
        ("r8_minilm:classify", {"instances": ["oil"]}, '"examples": a non-empty list'),
        ("r8_minilm:regress", {"examples": [{"text": "oil"}]}, "this model is no regression"),
    ):
        status, reply = call(server.url, f"/v1/models/{path}", body)
        assert status == 400 and message in reply["error"] and "\n" not in reply["error"], reply
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "r8_minilm"
    request.input.example_list.examples.add().features.feature["text"].float_list.value.append(1.0)
    with pytest.raises(grpc.RpcError) as caught:
        predictions.Classify(request, timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "text" in caught.value.details()


def test_multi_inference_answers_each_task_as_classify_does_and_refuses_as_tf_serving(server):
    """TF Serving's MultiInference with its stock stub: a classify task gives Classify's result with
    the model's version; TF Serving's own refusals (codes and messages) for what it refuses."""
    predictions, _ = grpc_stubs(server)
    texts = [b"wheat and grain exports rose sharply", b"the company agreed to acquire the bank for cash"]

    def request(*tasks):
        built = inference_pb2.MultiInferenceRequest()
        for model, method, signature in tasks:
            task = built.tasks.add(method_name=f"tensorflow/serving/{method}")
            task.model_spec.name, task.model_spec.signature_name = model, signature
        for text in texts:
            built.input.example_list.examples.add().features.feature["text"].bytes_list.value.append(text)
        return built

    (result,) = predictions.MultiInference(request(("r8_minilm", "classify", "")), timeout=60).results
    classify = classification_pb2.ClassificationRequest(input=request().input)
    classify.model_spec.name = "r8_minilm"
    assert result.classification_result == predictions.Classify(classify, timeout=60).result
    assert (result.model_spec.name, result.model_spec.signature_name) == ("r8_minilm", "serve_examples")
    assert result.model_spec.version.value > 0 and len(result.classification_result.classifications) == 2
    for tasks, code, message in (
        ((), grpc.StatusCode.INVALID_ARGUMENT, "a MultiInferenceRequest needs at least one task"),
        (
            (("r8_minilm", "classify", ""), ("digits", "classify", "")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.",
        ),
        (
            (("r8_minilm", "classify", ""), ("r8_minilm", "regress", "serve_examples")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: serve_examples",
        ),
        (
            (("r8_minilm", "predict", ""),),
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        ((("r8_minilm", "regress", ""),), grpc.StatusCode.INVALID_ARGUMENT, "this model is no regression"),
        ((("letters", "classify", ""),), grpc.StatusCode.NOT_FOUND, "letters"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            predictions.MultiInference(request(*tasks), timeout=60)
        assert caught.value.code() == code and message in caught.value.details(), caught.value.details()
        assert "\n" not in caught.value.details()


def test_version_options_that_cannot_work_are_one_line_before_anything_loads(tmp_path):
    path = tmp_path / "digits"  # refused before it is read
    for args, message in (
        (["--version-label", "digits-stable"], "--version-label takes NAME:LABEL=VERSION, as in digits:stable=1"),
        (["--version-label", "letters:stable=1"], "--version-label names letters, which is not served"),
        (["--versions", "0"], "argument --versions: must be a whole number above 0 (got '0')"),
        (["--poll-seconds", "-1"], "argument --poll-seconds: must be a number above 0 (got '-1')"),
    ):
        result = garden("serve", f"digits={path}", "--port", str(free_port()), *args, check=False)
        assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1], result.stderr
    config = tmp_path / "models.config"
    for text, message in (
        (MODEL_CONFIG.format(base=path, policy="specific { versions: 1 }"), "asks for specific versions"),
        (MODEL_CONFIG.format(base=path, policy="all {}").replace('"tensorflow"', '"onnx"'), "on platform 'onnx'"),
        ("model_config_list { config { nme: 'x' } }", "is not a TF Serving model config"),
        ("", "names no model"),
    ):
        config.write_text(text)
        result = garden("serve", "--model-config-file", config, "--port", str(free_port()), check=False)
        assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1], result.stderr
    result = garden("serve", f"digits={path}", "--model-config-file", config, check=False)
    assert result.returncode == 2 and "leave [NAME=]PATH, --versions and --version-label out" in result.stderr


def test_a_model_config_file_reads_as_tf_serving_reads_it(tmp_path):
    config = tmp_path / "models.config"
    two = MODEL_CONFIG.format(base="/models/digits", policy="latest { num_versions: 3 }").rstrip()[: -len("}")]
    config.write_text(two + 'config { name: "r8" base_path: "/models/r8" model_version_policy { all {} } } }')
    read = read_model_config(str(config))
    assert read.paths == {"digits": "/models/digits", "r8": "/models/r8"} and read.labels == {"digits": {"stable": 1}}
    assert read.keep == {"digits": 3, "r8": ALL_VERSIONS}

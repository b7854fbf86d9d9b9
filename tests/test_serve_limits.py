"""`garden serve` within bounds: a language model's generations within the server's beams, new
tokens and memory (400 for what can never fit, 429 for what must wait), Prometheus series only for
what is served, and a base path whose served version is removed rolled back once."""

import asyncio
import collections
import json
import pathlib
import shutil
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc
from test_serve import call, free_port, grpc_predict, metric_samples, serving

from garden.config import TokenizerConfig
from garden.data.tokenizers import build_tokenizer
from garden.export.batching import Batcher
from garden.export.decoder import write_saved_model
from garden.export.requests import Generation, GenerationBudget, Limits
from garden.generate.generator import Generator
from garden.generate.sampler import Sampling
from garden.models.backbones.decoder import DecoderBackbone

MAX_LENGTH = 1024  # the decode step's cache: a streamed generation holds it whole
# the tiny decoder's key/value cache per position: 1 layer x (key, value) x 1 head x 16 dims x float32
POSITION_BYTES = 1 * 2 * 1 * 16 * 4
VOCABULARY = 256  # byte tokens


def estimate(rows, beams, positions):
    """A generation's memory as `garden serve --help` states it: 5 x (cache + float32 logits)."""
    return 5 * rows * beams * (positions * POSITION_BYTES + 4 * VOCABULARY)


STREAM = estimate(1, 1, MAX_LENGTH)
BUDGET = STREAM + estimate(1, 4, 60) // 2  # a 4-beam search of 60 positions fits alone, not beside a stream


# REST URL, gRPC host:port, the Generator of the served language model, the folder of the SavedModels
LM = collections.namedtuple("LM", "url grpc generator folder")


class Echo(tf.Module):
    """A generation signature (prompt and max_new_tokens in) with no decode step to read a cache from,
    and 32,768 float32 weights."""

    def __init__(self):
        super().__init__()
        self.weights = tf.Variable(tf.zeros([32_768]))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.int32)])
    def generate(self, prompt, max_new_tokens):
        return {"text": prompt}


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """`garden serve` holding the tiny language model (and Echo) behind limits of 4 beams, 700 new
    tokens and BUDGET bytes of generations."""
    folder = tmp_path_factory.mktemp("limits")
    keras.utils.set_random_seed(0)
    decoder = DecoderBackbone(num_layers=1, num_heads=2, num_key_value_heads=1, hidden_dim=32, intermediate_dim=48)
    tokenizer = build_tokenizer("decoder", TokenizerConfig())
    write_saved_model(decoder, tokenizer, str(folder / "lm"), max_length=MAX_LENGTH)
    echo = Echo()
    tf.saved_model.save(echo, str(folder / "echo"), signatures={"serving_default": echo.generate})
    grpc_port = free_port()
    limits = ["--max-beams", "4", "--max-new-tokens", "700", "--max-generation-bytes", str(BUDGET)]
    models = [f"lm={folder / 'lm'}", f"echo={folder / 'echo'}"]
    with serving(*models, *limits, "--grpc-port", str(grpc_port)) as url:
        yield LM(url, f"127.0.0.1:{grpc_port}", Generator(decoder, tokenizer), folder)


def beam_row(prompt="ROMEO:", beams=4, new=20):
    return {"prompt": prompt, "max_new_tokens": new, "beams": beams, "length_penalty": 1.0, "stop": [""]}


def sampled_row(prompt="ROMEO:", new=20):
    settings = {"seed": 0, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
    return {"prompt": prompt, "max_new_tokens": new, **settings, "stop": [""]}


def grpc_columns(rows):
    """The `beam_search` rows as TensorProto columns of the signature's dtypes."""
    dtypes = {"prompt": object, "stop": object, "max_new_tokens": np.int32, "beams": np.int32}
    return {name: np.array([row[name] for row in rows], dtypes.get(name, np.float32)) for name in rows[0]}


def grpc_refusal(address, rows):
    """(code name, details) of a gRPC beam_search Predict that fails."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    with pytest.raises(grpc.RpcError) as caught:
        grpc_predict(stub, "lm", grpc_columns(rows), signature="beam_search")
    return caught.value.code().name, caught.value.details()


def peak_rss(url) -> int:
    """The peak resident memory (VmHWM, bytes) of the `garden serve` process listening at `url`."""
    port = url.rsplit(":", 1)[1]
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            if b"serve" in args and port.encode() in args:
                status = (cmdline.parent / "status").read_text()
                return int(status.split("VmHWM:")[1].split()[0]) * 1024
        except OSError:  # a process that ended while it was read
            continue
    raise AssertionError(f"no garden serve process on port {port}")


def test_generations_past_the_limits_are_one_line_naming_the_flag_over_rest_grpc_and_streams(lm):
    url, address, generator = lm.url, lm.grpc, lm.generator
    for rows, flag in (
        ([beam_row(beams=5)], "--max-beams 4"),
        ([beam_row(new=701)], "--max-new-tokens 700"),
        ([beam_row()] * 16, f"--max-generation-bytes {BUDGET}"),  # 16 rows x 4 beams: twice the budget
    ):
        status, reply = call(url, "/v1/models/lm:predict", {"signature_name": "beam_search", "instances": rows})
        assert status == 400 and flag in reply["error"] and "\n" not in reply["error"], reply
        assert f"raise {flag.split()[0]}" in reply["error"]
        assert grpc_refusal(address, rows) == ("INVALID_ARGUMENT", reply["error"])
    status, reply = call(url, "/v1/models/lm:predict", {"instances": [sampled_row(new=701)]})
    assert status == 400 and "--max-new-tokens 700" in reply["error"], reply
    status, reply = call(url, "/v1/models/lm:predict", {"stream": True, "instances": [sampled_row(new=701)]})
    assert status == 400 and "--max-new-tokens 700" in reply["error"], reply
    status, reply = call(url, "/v1/models/lm:predict", {"instances": [sampled_row(new=200)] * 64})
    assert status == 400 and "--max-generation-bytes" in reply["error"], reply  # 64 rows x 206 positions

    before = peak_rss(url)
    body = {"signature_name": "beam_search", "instances": [beam_row(beams=100_000, new=50)]}
    status, reply = call(url, "/v1/models/lm:predict", body)  # grew a server to 10.2 GB before these limits
    assert status == 400 and "--max-beams 4" in reply["error"]
    assert peak_rss(url) - before < 50 * 2**20
    status, reply = call(url, "/v1/models/lm:predict", {"signature_name": "beam_search", "instances": [beam_row()]})
    assert status == 200 and reply["predictions"] == generator.generate(["ROMEO:"], 20, None, beams=4)


def test_without_a_decode_step_a_generation_is_bounded_by_the_weights(lm):
    """Each position and each logit counted as the weights' bytes / 32 (a bound for hidden sizes from
    32), a prompt as its bytes and a start token."""
    weights = sum(f.stat().st_size for f in (lm.folder / "echo" / "variables").iterdir())
    per_row = 5 * ((len("abcd") + 1 + 1) * (weights // 32) + 4 * (weights // 32))  # 1 new token
    rows = BUDGET // per_row
    assert rows >= 2
    body = {"instances": [{"prompt": "abcd", "max_new_tokens": 1}] * rows}
    assert call(lm.url, "/v1/models/echo:predict", body) == (200, {"predictions": ["abcd"] * rows})
    body["instances"].append(body["instances"][0])
    status, reply = call(lm.url, "/v1/models/echo:predict", body)
    assert status == 400 and "--max-generation-bytes" in reply["error"], reply


def test_a_generation_that_fits_alone_gets_429_beside_running_ones_and_its_retry_is_answered(lm):
    """A streamed generation holds the decode step's whole cache while it runs: a 4-beam search (REST
    and gRPC) and a second stream do not fit beside it and are told to retry; once it ends they run."""
    url, address, generator = lm.url, lm.grpc, lm.generator
    search = {"signature_name": "beam_search", "instances": [beam_row(new=40)]}
    row = sampled_row(prompt="O", new=650)
    request = urllib.request.Request(
        url + "/v1/models/lm:predict", data=json.dumps({"stream": True, "instances": [row]}).encode()
    )
    with urllib.request.urlopen(request, timeout=60) as stream:
        first = stream.readline()
        assert first.startswith(b"data: {"), first  # running: its cache is held
        status, reply = call(url, "/v1/models/lm:predict", search)
        assert status == 429 and reply["error"].startswith("server busy: ") and "retry" in reply["error"], reply
        assert "\n" not in reply["error"]
        code, details = grpc_refusal(address, search["instances"])
        assert code == "RESOURCE_EXHAUSTED" and details.startswith("server busy: "), details
        status, reply = call(url, "/v1/models/lm:predict", {"stream": True, "instances": [row]})
        assert status == 429 and reply["error"].startswith("server busy: "), reply
        events = [json.loads(first[len(b"data: ") :])]
        events += [json.loads(line[len(b"data: ") :]) for line in stream if line.startswith(b"data: ")]
    assert events[-1] == {"done": True}
    assert "".join(e["text"] for e in events[:-1]) == generator.generate(["O"], 650, Sampling(temperature=0))[0]
    for _ in range(50):  # the sampler gives its memory back as it ends, just after its last event
        status, reply = call(url, "/v1/models/lm:predict", search)
        if status != 429:
            break
        time.sleep(0.1)
    assert status == 200 and reply["predictions"] == generator.generate(["ROMEO:"], 40, None, beams=4)


def test_generations_join_a_batch_only_where_the_budget_holds_what_joining_adds():
    """Batched, every row is padded to the longest prompt, widest search and most new tokens: a narrow
    generation joins a wide one's call only when the budget has room for its padding."""
    narrow, wide = (Generation(1, beams, 5, 10, POSITION_BYTES, VOCABULARY) for beams in (1, 16))
    padding = Generation(2, 16, 5, 10, POSITION_BYTES, VOCABULARY).bytes - narrow.bytes - wide.bytes
    assert padding == estimate(1, 15, 15)  # the narrow row searched as wide as the wide one

    def calls(free):
        budget, seen = GenerationBudget(narrow.bytes + wide.bytes + free), []

        def run(arrays):
            seen.append(len(arrays["x"]))
            return {"y": arrays["x"] * 2}

        async def both():
            batcher = Batcher(run, Limits(batch_timeout_ms=200), lambda requests, rows: None, budget)
            held = [budget.reserve(g) for g in (wide, narrow)]  # as Servable.predict holds them
            inputs = [{"x": np.array([float(i)])} for i in range(2)]
            answers = await asyncio.gather(*(batcher.predict(x, g) for x, g in zip(inputs, (wide, narrow))))
            assert [a["y"].tolist() for a in answers] == [[0.0], [2.0]]
            budget.give(sum(held))
            batcher.close()
            await batcher.task

        asyncio.run(both())
        assert budget.used == 0
        return seen

    assert calls(free=padding) == [2]
    assert calls(free=padding - 1) == [1, 1]


def test_prometheus_labels_only_served_models_and_loaded_versions(lm):
    """50 made-up model names and versions over REST and gRPC add at most a few series (under model
    ""), and the served model's count stays exact."""
    url, address = lm.url, lm.grpc
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    columns = grpc_columns([beam_row(beams=1, new=2)])

    def series():
        return {labels for name, labels in metric_samples(url) if name == "garden_serving_requests_total"}

    def count(samples, **wanted):
        return sum(
            value
            for (name, labels), value in samples.items()
            if name == "garden_serving_requests_total" and wanted.items() <= dict(labels).items()
        )

    good = {"signature_name": "beam_search", "instances": [beam_row(beams=1, new=2)]}
    assert call(url, "/v1/models/lm:predict", good)[0] == 200  # the served model's series exists
    before, known = metric_samples(url), series()

    def made_up(i):
        """A request for a made-up model or version over each API, then a good one."""
        name = uuid.uuid4().hex
        paths = (f"/v1/models/{name}:predict", f"/v1/models/lm/versions/{1000 + i}:predict", f"/v1/models/{name}")
        assert call(url, paths[i % 3], good if i % 3 < 2 else None)[0] == 404
        model, version = (name, None) if i % 2 else ("lm", 1000 + i)
        with pytest.raises(grpc.RpcError):
            grpc_predict(stub, model, columns, signature="beam_search", version=version)
        return call(url, "/v1/models/lm:predict", good)[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(made_up, range(50))) == [200] * 50
    after, new = metric_samples(url), series() - known
    # at most: REST predict and status for no served model, predict for no loaded version; gRPC's two
    assert len(new) <= 5 and all(dict(labels)["model"] in ("", "lm") for labels in new), sorted(new)
    assert all(dict(labels)["version"] in ("", "1") for labels in series())
    assert count(after) - count(before) == 150
    assert (
        count(after, model="lm", version="1", status="200") - count(before, model="lm", version="1", status="200") == 50
    )


class Scale(tf.Module):
    """y = x * factor: versions whose answers tell them apart."""

    def __init__(self, factor):
        super().__init__()
        self.factor = tf.Variable(float(factor))

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def serve(self, x):
        return {"y": x * self.factor}


def write_version(base, version):
    """Version `version` (answering x * version), written beside `base` and renamed in."""
    module = Scale(version)
    tf.saved_model.save(module, str(base.parent / "staging"), signatures={"serving_default": module.serve})
    (base.parent / "staging").rename(base / str(version))


def test_a_removed_served_version_rolls_back_once_and_no_version_left_keeps_serving(tmp_path):
    """TF Serving unloads a version whose folder is gone: removing the served version 2 serves version
    1 after one load and one line, and polls after it change nothing; removing every version keeps
    version 1 served, said once; a new version is then picked up."""
    base = tmp_path / "scale"
    base.mkdir()
    for version in (1, 2):
        write_version(base, version)
    log = tmp_path / "server.log"

    def answer(url):
        status, reply = call(url, "/v1/models/scale:predict", {"instances": [[3.0]]})
        return reply["predictions"][0][0] if status == 200 else reply

    def lines():
        return [line for line in log.read_text().splitlines() if line.startswith("scale")]

    def within(seconds, condition):
        """Waits until `condition()` holds (polls come later on a loaded machine), at most `seconds`."""
        deadline = time.time() + seconds
        while not condition() and time.time() < deadline:
            time.sleep(0.1)

    def settled(url, expected):
        """The log's lines once `expected` answers and (at least) ten polls' time has passed since."""
        within(120, lambda: answer(url) == expected)
        time.sleep(1.0)  # ten polls: a loaded machine polls less often, which finds fewer lines, never more
        return lines()

    with serving(str(base), "--poll-seconds", "0.1", log=log) as url:
        assert answer(url) == 6.0 and lines() == []
        shutil.rmtree(base / "2")
        assert settled(url, 3.0) == [
            f"scale: serving version 1 ({base / '1'})",
            f"scale: version 2 was removed from {base}; unloaded it",
        ]
        statuses = {s["version"]: s["state"] for s in call(url, "/v1/models/scale")[1]["model_version_status"]}
        assert statuses == {"1": "AVAILABLE", "2": "END"}
        shutil.rmtree(base / "1")
        within(120, lambda: len(lines()) > 2)
        time.sleep(1.0)  # ten polls more, which say nothing again
        assert answer(url) == 3.0
        assert lines()[2:] == [f"scale: no version is left in {base}; serving version 1 from memory until one appears"]
        write_version(base, 3)
        assert settled(url, 9.0)[3:] == [
            f"scale: serving version 3 ({base / '3'})",
            f"scale: version 1 was removed from {base}; unloaded it",
        ]

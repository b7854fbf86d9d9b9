"""`garden serve`: SavedModels behind TF Serving's REST API, and its gRPC API with `--grpc-port`
(export/grpc_api.py), so a TF Serving client works unchanged.

    GET  /v1/models/NAME[/versions/N]            the state of each version
    GET  /v1/models/NAME[/versions/N]/metadata   signature definitions
    POST /v1/models/NAME[/versions/N]:predict    {"instances": [...]} or {"inputs": ...}
    POST /v1/models/NAME[/versions/N]:classify   {"examples": [{feature: value}, ...], "context": {...}}
    POST /v1/models/NAME[/versions/N]:regress    the same, through the serve_examples signature
    GET  /monitoring/prometheus/metrics          requests, latency, batch sizes, streamed pieces (export/monitoring.py)
    GET  /healthz                                {"status": "ok", "models": [...], requests and model calls so far}

A model is a SavedModel folder, served as version 1, or TF Serving's base path of numbered version
folders (`models/NAME/1`, `models/NAME/2`): its newest version (or newest `keep_versions`) is
served, and the base path is polled so a new version is loaded and swapped in without a restart;
requests in flight finish on the version they found. `version_labels` name versions
(/labels/stable). A version that fails to load is logged and shown in the status (state END with
its error) while the serving ones stay. Write a new version elsewhere and rename it into the
base path, so it is never read half-written.

Concurrent requests for one signature (and one input shape) are batched into one model call, up to
`max_batch_size` rows or `batch_timeout_ms` of waiting. Bad requests get 400 with {"error": ...}."""

import asyncio
import dataclasses
import functools
import gc
import os
import socket
import sys
import threading
import time

import numpy as np
import orjson
import tensorflow as tf
from aiohttp import web
from tensorflow.core.protobuf import saved_model_pb2

from garden.errors import GardenError
from garden.export import grpc_api, manifest
from garden.export.decoder import SavedModelStream
from garden.export.monitoring import CONTENT_TYPE, ServingMetrics
from garden.export.requests import NotFound, RequestError, check_instances, check_range
from garden.export.rest_api import parse, parse_examples, response, tensor_info
from garden.generate.sampler import Rules
from garden.tasks.task import EXAMPLES_SIGNATURE


@dataclasses.dataclass
class Limits:
    max_request_bytes: int = 10 * 2**20
    max_instances: int = 1024
    max_batch_size: int = 64
    batch_timeout_ms: float = 5.0


@dataclasses.dataclass
class VersionStatus:
    version: int
    state: str  # TF Serving's ModelVersionStatus.State: AVAILABLE, or END once unloaded or failed
    error: str = ""


class Batcher:
    """One queue of (inputs, future); a task drains it into batched calls of `run` on a worker thread.
    `on_call(requests, rows)` hears of each call."""

    def __init__(self, run, limits, on_call):
        self.run, self.limits, self.on_call = run, limits, on_call
        self.closed = False
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.drain())

    async def predict(self, inputs):
        future = asyncio.get_running_loop().create_future()
        if self.closed:  # found this version just before a newer one replaced it: answered alone
            await self.answer([(inputs, future)])
        else:
            self.queue.put_nowait((inputs, future))
        return await future

    def close(self):
        """Answers what is queued, then stops draining."""
        self.closed = True
        self.queue.put_nowait(None)

    async def drain(self):
        loop = asyncio.get_running_loop()
        while (first := await self.queue.get()) is not None:
            batch, rows = [first], _rows(first[0])
            deadline = loop.time() + self.limits.batch_timeout_ms / 1000
            while rows < self.limits.max_batch_size and (wait := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self.queue.get(), wait)
                except asyncio.TimeoutError:
                    break
                if item is None:
                    self.queue.put_nowait(None)  # stop after this batch
                    break
                batch.append(item)
                rows += _rows(item[0])
            await self.answer(batch)

    async def answer(self, batch):
        """Runs `batch` in one call; when the model rejects it, runs each request alone, so one bad
        request (an undecodable image, say) fails only itself."""
        joined = {name: np.concatenate([inputs[name] for inputs, _ in batch]) for name in batch[0][0]}
        self.on_call(len(batch), len(next(iter(joined.values()))))
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(None, self.run, joined)
        except Exception as error:  # TensorFlow's errors for data that fits the signature but not the model
            if len(batch) > 1:
                for item in batch:
                    await self.answer([item])
            else:
                batch[0][1].set_exception(RequestError(_model_error(error)))
            return
        start = 0
        for inputs, future in batch:
            count = _rows(inputs)
            future.set_result({k: v[start : start + count] for k, v in outputs.items()})
            start += count


def _rows(inputs):
    return len(next(iter(inputs.values())))


def _model_error(error):
    """The line of a model's error that says what went wrong, without TensorFlow's graph execution
    preamble, stack and node locations ([[{{node ...}}]])."""
    lines = [line.strip() for line in str(getattr(error, "message", None) or error).splitlines() if line.strip()]
    located = next((i for i, line in enumerate(lines) if "[[" in line), None)
    if located is not None:  # TensorFlow's message is the line at the node location, or the one before it
        said = lines[located].split("[[")[0].strip() or (lines[located - 1] if located else "")
    else:
        said = lines[0] if lines else ""
    return " ".join((said or type(error).__name__).split())[:300]


class Servable:
    """One loaded version of a model: its signatures and one batcher per (signature, input shapes)."""

    def __init__(self, name, version, folder, metrics):
        path = saved_model_folder(folder)
        if path is None:
            raise GardenError(
                f"{folder} is not a SavedModel folder (no saved_model.pb); export one with 'garden export RUN_DIR'"
            )
        self.name, self.version, self.path, self.metrics = name, version, path, metrics
        self.model = tf.saved_model.load(path)
        self.signatures = dict(self.model.signatures)
        self.batchers = {}
        found = manifest.read(os.path.dirname(os.path.abspath(path)))
        self.input_ranges, self.label_names = found.get("input_ranges", {}), found.get("labels")
        features = found.get("signatures", {}).get(EXAMPLES_SIGNATURE, {}).get("features", {})
        self.example_dtypes = {name: entry["dtype"] for name, entry in features.items()}

    def specs(self, signature_name):
        if signature_name not in self.signatures:
            raise RequestError(f"no signature '{signature_name}'; this model has {', '.join(self.signatures)}")
        return self.signatures[signature_name].structured_input_signature[1]

    async def predict(self, signature_name, inputs, limits):
        for name, array in inputs.items():
            if name in self.input_ranges:
                check_range(name, array, self.input_ranges[name])
        key = (signature_name, tuple((n, a.shape[1:]) for n, a in sorted(inputs.items())))
        if key not in self.batchers:
            signature = self.signatures[signature_name]

            def run(arrays, signature=signature):
                return {k: v.numpy() for k, v in signature(**{n: tf.constant(a) for n, a in arrays.items()}).items()}

            def on_call(requests, rows):
                self.metrics.batch(self.name, str(self.version), requests, rows)

            self.batchers[key] = Batcher(run, limits, on_call)
        return await self.batchers[key].predict(inputs)

    def stream(self, signature_name, inputs):
        """A SavedModelStream of the one instance `inputs` holds for a `generate` signature."""
        if signature_name not in ("generate", "serving_default") or "repetition_penalty" not in inputs:
            raise RequestError('only a language model\'s "generate" signature streams; leave "stream" out')
        if len(inputs["prompt"]) != 1:
            raise RequestError(f"a streamed request holds one instance, not {len(inputs['prompt'])}")
        rules = Rules.of_inputs(inputs)
        stop = [s.decode() for s in inputs["stop"][0] if s]
        try:
            return SavedModelStream(
                self.signatures, inputs["prompt"][0].decode(), int(inputs["max_new_tokens"][0]), rules, stop
            )
        except (ValueError, tf.errors.InvalidArgumentError) as error:
            raise RequestError(_model_error(error)) from error

    async def examples(self, signature_name, serialized, limits):
        """The outputs of signature `signature_name` (serve_examples when empty) for serialized
        tf.train.Examples, batched with the signature's other requests."""
        signature_name = signature_name or EXAMPLES_SIGNATURE
        specs = self.specs(signature_name)
        if list(specs) != ["examples"] or specs["examples"].dtype != tf.string:
            raise RequestError(f"signature '{signature_name}' does not take tf.train.Examples; name one that does")
        if not serialized:
            raise RequestError("the request holds no examples; send at least one")
        check_instances({"examples": serialized}, limits.max_instances)
        return await self.predict(signature_name, {"examples": np.array(serialized, dtype=object)}, limits)

    def classes(self, outputs):
        """(probabilities [examples, classes], the class names) of a classifier's outputs."""
        if "probabilities" not in outputs:
            raise RequestError("this model is no classifier (no probabilities output); call predict or regress")
        count = outputs["probabilities"].shape[-1]
        names = self.label_names if self.label_names and len(self.label_names) == count else None
        return outputs["probabilities"], names or [str(i) for i in range(count)]

    def scores(self, outputs):
        """A regression's scores [examples]."""
        if "score" not in outputs:
            raise RequestError("this model is no regression (no score output); call predict or classify")
        return outputs["score"]

    def close(self):
        for batcher in self.batchers.values():
            batcher.close()

    @functools.cached_property
    def signature_defs(self):
        """name -> SignatureDef proto, as saved_model.pb holds them (TF Serving's gRPC metadata); read once."""
        saved_model = saved_model_pb2.SavedModel()
        with open(os.path.join(self.path, "saved_model.pb"), "rb") as file:
            saved_model.ParseFromString(file.read())
        found = saved_model.meta_graphs[0].signature_def
        return {name: found[name] for name in self.signatures}

    def metadata(self):
        signature_def = {
            name: {
                "inputs": {n: tensor_info(s) for n, s in signature.structured_input_signature[1].items()},
                "outputs": {n: tensor_info(s) for n, s in signature.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict",
            }
            for name, signature in self.signatures.items()
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signature_def}},
        }


def saved_model_folder(folder):
    """`folder` when it holds saved_model.pb, its `saved_model/` when that does (Garden's export folder,
    with the manifest beside it), else None."""
    for path in (folder, os.path.join(folder, "saved_model")):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return path
    return None


def _stamp(folder):
    """When anything in `folder` last changed: a failed version is tried again once it changes."""
    return max((os.stat(os.path.join(d, f)).st_mtime for d, _, files in os.walk(folder) for f in files), default=0.0)


class Model:
    """One served name: a SavedModel or export folder (version 1), or a base path of numbered version
    folders whose newest `keep` are served (TF Serving's latest policy), `labels` naming versions."""

    def __init__(self, name, path, metrics, keep=1, labels=None):
        self.name, self.path, self.metrics, self.keep = name, os.path.abspath(path), metrics, keep
        self.labels = labels or {}  # label -> version
        self.versioned = os.path.isdir(self.path) and saved_model_folder(self.path) is None
        self.loaded = {}  # version -> Servable
        self.ended = {}  # version -> why it is not served ('' once unloaded for newer ones)
        self.failed_at = {}  # version -> _stamp of its folder when it failed to load
        found = self.on_disk()
        if not found:
            raise GardenError(
                f"{path} holds no SavedModel (saved_model.pb) and no numbered version folders; "
                "export one with 'garden export RUN_DIR' and serve RUN_DIR/export, or copy it to PATH/1"
            )
        for version, folder in found[-keep:]:
            try:
                self.loaded[version] = Servable(name, version, folder, metrics)
            except GardenError:
                raise
            except Exception as error:
                raise GardenError(
                    f"{name} version {version} ({folder}) failed to load: {_model_error(error)}"
                ) from error

    @property
    def serving(self):
        """The newest loaded version: what a request that names none gets."""
        return self.loaded[max(self.loaded)]

    def on_disk(self):
        """[(version, folder)] of the versions on disk, oldest first."""
        if not self.versioned:
            return [(1, self.path)]
        if not os.path.isdir(self.path):
            return []
        found = sorted(
            int(d) for d in os.listdir(self.path) if d.isdigit() and os.path.isdir(os.path.join(self.path, d))
        )
        return [(version, os.path.join(self.path, str(version))) for version in found]

    async def refresh(self):
        """Loads the newest `keep` versions on disk that are not loaded (on a worker thread), then
        unloads what is older than the `keep` newest loaded: a version that fails to load unloads none."""
        if not self.versioned:
            return
        loop, loaded = asyncio.get_running_loop(), []
        for version, folder in self.on_disk()[-self.keep :]:
            stamp = _stamp(folder)
            if version in self.loaded or self.failed_at.get(version) == stamp:
                continue
            try:
                servable = await loop.run_in_executor(None, Servable, self.name, version, folder, self.metrics)
            except Exception as error:  # a broken or half-written version: the serving ones stay
                self.failed_at[version], self.ended[version] = stamp, _model_error(error)
                print(
                    f"{self.name} version {version} failed to load: {self.ended[version]}", file=sys.stderr, flush=True
                )
                continue
            self.loaded[version] = servable
            self.ended.pop(version, None)
            loaded.append(version)
            print(f"{self.name}: serving version {version} ({folder})", flush=True)
        for version in sorted(self.loaded)[: -self.keep]:
            self.loaded.pop(version).close()
            self.ended[version] = ""
        if loaded:
            _freeze(unfreeze=True)  # let the collector free unloaded versions, then keep it off the new ones

    def find(self, version=None, label=None):
        """The loaded version that `version` or `label` names; the newest when neither is given."""
        if label is not None:
            if label not in self.labels:
                raise NotFound(
                    f"Servable not found for request: Label({self.name}, {label}); name a version with "
                    f"--version-label {self.name}:{label}=N"
                )
            version = self.labels[label]
        if version is None:
            return self.serving
        if version not in self.loaded:
            kind = f"Label({self.name}, {label}): version {version}" if label else f"Specific({self.name}, {version})"
            raise NotFound(f"Servable not found for request: {kind} is not loaded")
        return self.loaded[version]

    def statuses(self):
        found = [VersionStatus(v, "END", error) for v, error in self.ended.items()]
        return sorted([*found, *(VersionStatus(v, "AVAILABLE") for v in self.loaded)], key=lambda s: s.version)


def _freeze(unfreeze=False):
    """The loaded models are hundreds of thousands of long-lived Python objects; left to the collector,
    each full collection walks them all (pauses of 0.5 s under load). Frozen, it skips them."""
    if unfreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


class Models:
    """The served models by name: what REST and gRPC look requests up in."""

    def __init__(
        self, paths: dict[str, str], metrics: ServingMetrics, keep: int | dict[str, int] = 1, labels: dict | None = None
    ):
        """`keep`: how many of each base path's newest versions are served, for all models or by name."""
        labels = labels or {}
        keep = keep if isinstance(keep, dict) else dict.fromkeys(paths, keep)
        unknown = sorted(set(labels) - set(paths))
        if unknown:
            raise GardenError(
                f"--version-label names {', '.join(unknown)}, which is not served; serve it or drop the label"
            )
        self.models = {
            name: Model(name, path, metrics, keep.get(name, 1), labels.get(name)) for name, path in paths.items()
        }
        _freeze()

    def _model(self, name):
        if name not in self.models:
            raise NotFound(f"Servable not found for request: Latest({name})")
        return self.models[name]

    def find(self, name, version=None, label=None) -> Servable:
        """The servable a request names: the newest loaded version, or the one `version` or `label` names."""
        return self._model(name).find(version, label)

    def statuses(self, name, version=None, label=None) -> list[VersionStatus]:
        model = self._model(name)
        if label is not None:
            version = model.find(None, label).version
        found = [s for s in model.statuses() if version is None or s.version == version]
        if not found:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return found

    async def poll(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            for model in self.models.values():
                await model.refresh()


MODELS = web.AppKey("models", Models)
AHEAD = 2  # pieces a streamed generation samples before the client has been sent them


def model_name(path: str) -> str:
    """The experiment named by the manifest beside `path`, else the folder's name."""
    return manifest.read(os.path.dirname(os.path.abspath(path))).get("experiment") or os.path.basename(
        os.path.abspath(path)
    )


def _json(value) -> str:
    return orjson.dumps(value).decode()


def _error(status, message):
    return web.json_response({"error": message}, status=status)


def _middleware(metrics):
    @web.middleware
    async def answer(request, handler):
        """TF Serving's {"error": ...} for every failure (unknown paths and methods too), counted by
        model, version and API; a client that hangs up is no error of the server's."""
        start = time.perf_counter()
        try:
            reply = await handler(request)
        except web.HTTPException as error:
            reply = _error(error.status, f"{error.reason}: {request.method} {request.path}")
        except NotFound as error:
            reply = _error(404, str(error))
        except ConnectionResetError:  # the client hung up: one line in the server's log, nobody to answer
            print(f"{request.remote} hung up during {request.method} {request.path}", file=sys.stderr, flush=True)
            reply = web.Response(status=499)  # nginx's "client closed request"
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug of ours: one line to the client, the server keeps serving
            reply = _error(500, f"internal error: {type(error).__name__}: {_model_error(error)}")
        api = getattr(request.match_info.route.handler, "__name__", "")
        if api in ("status", "metadata", "predict", "classify", "regress"):
            version = request.get("version", request.match_info.get("version", ""))
            model = request.match_info.get("name", "")
            metrics.observe(model, str(version), api, "rest", str(reply.status), time.perf_counter() - start)
        return reply

    return answer


def build_app(
    models: dict[str, str],
    limits: Limits | None = None,
    grpc_address: str | None = None,
    poll_seconds: float = 1.0,
    keep_versions: int | dict[str, int] = 1,
    version_labels: dict[str, dict[str, int]] | None = None,
) -> web.Application:
    """The aiohttp application serving `models` (name -> SavedModel folder or base path of versions:
    the newest `keep_versions`, `version_labels` naming some), with TF Serving's gRPC API on
    `grpc_address` when given."""
    metrics = ServingMetrics()
    served = Models(models, metrics, keep_versions, version_labels)
    limits = limits or Limits()
    app = web.Application(client_max_size=limits.max_request_bytes, middlewares=[_middleware(metrics)])
    app[MODELS] = served

    def named(request):
        """(name, version, label) that a request's path names."""
        version = request.match_info.get("version")
        return request.match_info["name"], int(version) if version else None, request.match_info.get("label")

    def servable(request):
        found = served.find(*named(request))
        request["version"] = found.version
        return found

    async def status(request):
        statuses = served.statuses(*named(request))
        return web.json_response(
            {
                "model_version_status": [
                    {
                        "version": str(s.version),
                        "state": s.state,
                        "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error},
                    }
                    for s in statuses
                ]
            }
        )

    async def metadata(request):
        return web.json_response(servable(request).metadata())

    async def body(request):
        """The request's body, or RequestError when it is over --max-request-bytes (said by its length
        before reading it when the client gave one)."""
        try:
            if (request.content_length or 0) <= limits.max_request_bytes:
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            pass
        raise RequestError(
            f"the request body is over {limits.max_request_bytes} bytes; split it (or raise --max-request-bytes)"
        )

    async def predict(request):
        model = servable(request)
        try:
            signature_name, inputs, columnar, stream = parse(await body(request), model.specs, limits.max_instances)
            if stream:
                return await streamed(request, model, model.stream(signature_name, inputs))
            outputs = await model.predict(signature_name, inputs, limits)
        except RequestError as error:
            return _error(400, str(error))
        return web.json_response(response(outputs, columnar), dumps=_json)

    async def streamed(request, model, stream):
        """Server-sent events: {"text": piece} as each piece comes, then {"done": true} (or {"error": ...}).
        The sampler runs in a thread at most AHEAD pieces before what the client has been sent, and
        stops when the client hangs up."""
        loop, events, gone = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
        room, sampled = threading.Semaphore(AHEAD), metrics.streamed_pieces.labels(model.name, str(model.version))

        def send(event):
            """Queues `event` when the client is within AHEAD pieces of it; False once it is gone."""
            while not room.acquire(timeout=0.1):
                if gone.is_set():
                    return False
            if gone.is_set():
                return False
            loop.call_soon_threadsafe(events.put_nowait, event)
            return True

        def produce():
            try:
                for piece in stream.pieces():
                    sampled.inc()
                    if not send({"text": piece}):
                        return
                send({"done": True})
            except Exception as error:  # TensorFlow's, from the model
                send({"error": _model_error(error)})

        reply = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await reply.prepare(request)
        loop.run_in_executor(None, produce)
        try:
            while True:
                event = await events.get()
                await reply.write(b"data: " + orjson.dumps(event) + b"\n\n")
                room.release()
                if "text" not in event:
                    return reply
        finally:
            gone.set()

    async def classify(request):
        return await examples_api(request, "classify")

    async def regress(request):
        return await examples_api(request, "regress")

    async def examples_api(request, api):
        """TF Serving's classify and regress: {"result": [[[label, score], ...], ...]} or {"result": [score, ...]}."""
        model = servable(request)
        try:
            signature_name, serialized = parse_examples(await body(request), model.example_dtypes)
            outputs = await model.examples(signature_name, serialized, limits)
            if api == "regress":
                result = model.scores(outputs).reshape(-1).tolist()
            else:
                probabilities, names = model.classes(outputs)
                result = [[[name, float(p)] for name, p in zip(names, row)] for row in probabilities]
        except RequestError as error:
            return _error(400, str(error))
        return web.json_response({"result": result}, dumps=_json)

    async def health(request):
        return web.json_response(
            {
                "status": "ok",
                "models": sorted(served.models),
                "predict_requests": metrics.batched_requests,
                "model_calls": metrics.model_calls,
            }
        )

    async def prometheus(request):
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def background(app):
        versioned = any(model.versioned for model in served.models.values())
        poller = asyncio.get_running_loop().create_task(served.poll(poll_seconds)) if versioned else None
        grpc_server = await grpc_api.start(served, limits, metrics, grpc_address) if grpc_address else None
        yield
        if poller:
            poller.cancel()
        if grpc_server:
            await grpc_server.stop(grace=1)

    app.cleanup_ctx.append(background)
    model_path = "/v1/models/{name:[^/:]+}"
    routes = []
    for path in (model_path, model_path + "/versions/{version:[0-9]+}", model_path + "/labels/{label:[^/:]+}"):
        routes += [web.get(path, status), web.get(path + "/metadata", metadata), web.post(path + ":predict", predict)]
        routes += [web.post(path + ":classify", classify), web.post(path + ":regress", regress)]
    app.add_routes([*routes, web.get("/healthz", health), web.get("/monitoring/prometheus/metrics", prometheus)])
    return app


def _check_free(host, port, flag):
    with socket.socket() as probe:  # refuse a taken port before announcing anything
        try:
            probe.bind((host, port))
        except OSError as error:
            raise GardenError(f"cannot listen on {host}:{port} ({error.strerror}); choose another {flag}") from error


def serve(
    models: dict[str, str],
    host: str = "127.0.0.1",
    port: int = 8501,
    limits: Limits | None = None,
    grpc_port: int | None = None,
    poll_seconds: float = 1.0,
    keep_versions: int | dict[str, int] = 1,
    version_labels: dict[str, dict[str, int]] | None = None,
) -> None:
    _check_free(host, port, "--port")
    if grpc_port is not None:
        _check_free(host, grpc_port, "--grpc-port")
    grpc_address = f"{host}:{grpc_port}" if grpc_port is not None else None
    app = build_app(models, limits, grpc_address, poll_seconds, keep_versions, version_labels)
    for name, model in app[MODELS].models.items():
        path = model.serving.path
        found = manifest.read(os.path.dirname(path))
        source = f"step {found['step']} of {found['checkpoint']}" if "step" in found else "no manifest beside it"
        versions = ", ".join(map(str, sorted(model.loaded)))
        versions = f" versions {versions}, polling {model.path} for newer ones" if model.versioned else ""
        print(f"serving {name} at http://{host}:{port}/v1/models/{name}: {path} ({source}){versions}", flush=True)
    if grpc_port is not None:
        print(f"gRPC (TF Serving's PredictionService and ModelService) at {host}:{grpc_port}", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)

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
its error) while the serving ones stay. A served version whose folder is removed is unloaded once
the newest remaining one serves (one log line); with no version left on disk, the loaded ones stay
served (said once). Write a new version elsewhere and rename it into the base path, so it is never
read half-written.

Concurrent requests for one signature (and one input shape) are batched into one model call, up to
`max_batch_size` rows or `batch_timeout_ms` of waiting. Bad requests get 400 with {"error": ...}
(gRPC INVALID_ARGUMENT), in one line naming the limit and the flag that raises it:

    --max-request-bytes (10 MiB)    a request's body (gRPC: its message)
    --max-instances (1024)          instances (rows) in one request
    --max-beams (16)                a language model's beam_search width
    --max-new-tokens (1024)         a language model's max_new_tokens, sampled, searched or streamed
    --max-generation-bytes (1 GiB)  the memory the generations running at once may hold, each estimated
                                    as 5 x (rows x beams x (prompt + new tokens) x the key/value cache's
                                    bytes per position (read from the decode_step signature) + rows x
                                    beams x vocabulary float32 logits) (a beam search measured 3.6-4.6x)

A generation that can never fit --max-generation-bytes gets 400; one that fits alone but not beside
the generations running (streamed ones hold the decode step's whole cache until they end) gets 429
"server busy: ... retry" (gRPC RESOURCE_EXHAUSTED), as TF Serving answers when its queue is full.
Requests are counted in the metrics under the served models and loaded versions they name, and
under model "" (version "") otherwise, so what clients send makes no new series.

The server is a light package: this module, servables.py (versions), batching.py, rest_api.py,
grpc_api.py, monitoring.py, requests.py and stream.py import TensorFlow (and TensorFlow Text's
ops), aiohttp, gRPC and TF Serving's protos, and of Garden only small modules; never KerasHub,
Model Garden or the training side."""

import asyncio
import json
import os
import socket
import sys
import threading
import time

import orjson
from aiohttp import web

from garden.errors import GardenError
from garden.export import grpc_api, manifest
from garden.export.monitoring import CONTENT_TYPE, ServingMetrics
from garden.export.requests import Busy, Limits, NotFound, RequestError, model_error
from garden.export.rest_api import parse, parse_examples, response
from garden.export.servables import Models, saved_model_folder, versions_on_disk

MODELS = web.AppKey("models", Models)
AHEAD = 2  # pieces a streamed generation samples before the client has been sent them


def model_name(path: str) -> str:
    """The experiment that `garden export`'s manifest names for `path` (an export folder RUN/export,
    its saved_model/, or a base path of numbered versions by its newest), else the folder's name."""
    path = os.path.abspath(path)
    versions = versions_on_disk(path) if saved_model_folder(path) is None else []
    folder = versions[-1][1] if versions else path
    for place in (folder, os.path.dirname(folder)):  # an export folder's manifest, or the one beside a SavedModel
        experiment = manifest.read(place).get("experiment")
        if experiment:
            return experiment
    return os.path.basename(path)


def _json(value) -> str:
    """orjson's JSON; where it wrote null for an infinite or NaN output, Python's json instead, which
    writes Infinity, -Infinity and NaN as TF Serving does (and Garden's parser reads them)."""
    text = orjson.dumps(value).decode()
    return json.dumps(value) if "null" in text else text


def _error(status, message):
    return web.json_response({"error": message}, status=status)


def _middleware(metrics, served):
    @web.middleware
    async def answer(request, handler):
        """TF Serving's {"error": ...} for every failure (unknown paths and methods too; 429 for a
        generation that waits for memory), counted by model, version and API (served ones only); a
        client that hangs up is no error of the server's."""
        start = time.perf_counter()
        try:
            reply = await handler(request)
        except web.HTTPException as error:
            reply = _error(error.status, f"{error.reason}: {request.method} {request.path}")
        except NotFound as error:
            reply = _error(404, str(error))
        except Busy as error:
            reply = _error(429, str(error))
        except ConnectionResetError:  # the client hung up: one line in the server's log, nobody to answer
            print(f"{request.remote} hung up during {request.method} {request.path}", file=sys.stderr, flush=True)
            reply = web.Response(status=499)  # nginx's "client closed request"
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug of ours: one line to the client, the server keeps serving
            reply = _error(500, f"internal error: {type(error).__name__}: {model_error(error)}")
        api = getattr(request.match_info.route.handler, "__name__", "")
        if api in ("status", "metadata", "predict", "classify", "regress"):
            version = request.get("version", request.match_info.get("version"))
            labels = served.metric_labels(request.match_info.get("name", ""), version)
            metrics.observe(*labels, api, "rest", str(reply.status), time.perf_counter() - start)
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
    metrics, limits = ServingMetrics(), limits or Limits()
    served = Models(models, metrics, keep_versions, version_labels, limits.max_generation_bytes)
    app = web.Application(client_max_size=limits.max_request_bytes, middlewares=[_middleware(metrics, served)])
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
                return await streamed(request, model, *model.stream(signature_name, inputs, limits))
            outputs = await model.predict(signature_name, inputs, limits)
        except RequestError as error:
            return _error(400, str(error))
        return web.json_response(response(outputs, columnar), dumps=_json)

    async def streamed(request, model, stream, held):
        """Server-sent events: {"text": piece} as each piece comes, then {"done": true} (or {"error": ...}).
        The sampler runs in a thread at most AHEAD pieces before what the client has been sent, and
        stops when the client hangs up; it gives the `held` bytes of the generation budget back when
        it ends."""
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
                send({"error": model_error(error)})
            finally:
                model.budget.give(held)

        reply = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await reply.prepare(request)
        except BaseException:  # the client is gone before the sampler starts
            model.budget.give(held)
            raise
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

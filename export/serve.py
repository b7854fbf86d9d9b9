"""`garden serve`: SavedModels behind TF Serving's REST API, so a TF Serving client works unchanged.

    GET  /v1/models/NAME                 version status
    GET  /v1/models/NAME/metadata        signature definitions
    POST /v1/models/NAME:predict         {"instances": [...]} or {"inputs": ...}  (also /versions/1:predict)
    GET  /healthz                        {"status": "ok", "models": [...], requests and model calls so far}

Concurrent requests for one signature (and one input shape) are batched into one model call, up to
`max_batch_size` rows or `batch_timeout_ms` of waiting. Bad requests get 400 with {"error": ...}."""

import asyncio
import dataclasses
import gc
import json
import os
import socket
import sys

import numpy as np
import orjson
import tensorflow as tf
from aiohttp import web

from garden.errors import GardenError
from garden.export import manifest
from garden.export.rest_api import RequestError, check_range, parse, response, tensor_info

VERSION = "1"


@dataclasses.dataclass
class Limits:
    max_request_bytes: int = 10 * 2**20
    max_instances: int = 1024
    max_batch_size: int = 64
    batch_timeout_ms: float = 5.0


class Batcher:
    """One queue of (inputs, future); a task drains it into batched calls of `run` on a worker thread."""

    def __init__(self, run, limits):
        self.run, self.limits = run, limits
        self.requests = self.calls = 0
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.drain())

    async def predict(self, inputs):
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((inputs, future))
        return await future

    async def drain(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            rows = len(next(iter(batch[0][0].values())))
            deadline = loop.time() + self.limits.batch_timeout_ms / 1000
            while rows < self.limits.max_batch_size and (wait := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self.queue.get(), wait)
                except asyncio.TimeoutError:
                    break
                batch.append(item)
                rows += len(next(iter(item[0].values())))
            await self.answer(batch)

    async def answer(self, batch):
        """Runs `batch` in one call; when the model rejects it, runs each request alone, so one bad
        request (an undecodable image, say) fails only itself."""
        joined = {name: np.concatenate([inputs[name] for inputs, _ in batch]) for name in batch[0][0]}
        self.requests, self.calls = self.requests + len(batch), self.calls + 1
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
            count = len(next(iter(inputs.values())))
            future.set_result({k: v[start : start + count] for k, v in outputs.items()})
            start += count


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
    """A loaded SavedModel: its signatures and one batcher per (signature, input shapes)."""

    def __init__(self, name, path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise GardenError(
                f"{path} is not a SavedModel folder (no saved_model.pb); export one with 'garden export RUN_DIR'"
            )
        self.name, self.path = name, path
        self.model = tf.saved_model.load(path)
        self.signatures = dict(self.model.signatures)
        self.batchers = {}
        self.input_ranges = manifest.read(os.path.dirname(os.path.abspath(path))).get("input_ranges", {})

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

            self.batchers[key] = Batcher(run, limits)
        return await self.batchers[key].predict(inputs)

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
            "model_spec": {"name": self.name, "signature_name": "", "version": VERSION},
            "metadata": {"signature_def": {"signature_def": signature_def}},
        }


def model_name(path: str) -> str:
    """The experiment named by the manifest beside `path`, else the folder's name."""
    return manifest.read(os.path.dirname(os.path.abspath(path))).get("experiment") or os.path.basename(
        os.path.abspath(path)
    )


def _json(value) -> str:
    return orjson.dumps(value).decode()


def _error(status, message):
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _json_errors(request, handler):
    """TF Serving's {"error": ...} for every failure (unknown paths and methods too); a client that
    hangs up is no error of the server's."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.content_type == "application/json":
            raise
        return _error(error.status, f"{error.reason}: {request.method} {request.path}")
    except ConnectionResetError:  # the client hung up: one line in the server's log, nobody to answer
        print(f"{request.remote} hung up during {request.method} {request.path}", file=sys.stderr, flush=True)
        return web.Response(status=499)  # nginx's "client closed request"
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a bug of ours: one line to the client, the server keeps serving
        return _error(500, f"internal error: {type(error).__name__}: {_model_error(error)}")


def build_app(models: dict[str, str], limits: Limits | None = None) -> web.Application:
    """The aiohttp application serving `models` (name -> SavedModel folder)."""
    servables = {name: Servable(name, path) for name, path in models.items()}
    # The loaded models are hundreds of thousands of long-lived Python objects; left to the collector,
    # each full collection walks them all (pauses of 0.5 s under load). Frozen, it skips them.
    gc.collect()
    gc.freeze()
    limits = limits or Limits()
    app = web.Application(client_max_size=limits.max_request_bytes, middlewares=[_json_errors])

    def servable(request):
        name, version = request.match_info["name"], request.match_info.get("version", VERSION)
        if name not in servables or version != VERSION:
            raise web.HTTPNotFound(
                text=json.dumps({"error": f"Servable not found for request: Specific({name}, {version})"}),
                content_type="application/json",
            )
        return servables[name]

    async def status(request):
        servable(request)
        return web.json_response(
            {
                "model_version_status": [
                    {"version": VERSION, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                ]
            }
        )

    async def metadata(request):
        return web.json_response(servable(request).metadata())

    async def predict(request):
        model = servable(request)
        if (request.content_length or 0) > limits.max_request_bytes:
            return _error(
                400,
                f"the request body is over {limits.max_request_bytes} bytes; split it (or raise --max-request-bytes)",
            )
        try:
            signature_name, inputs, columnar = parse(await request.read(), model.specs, limits.max_instances)
            outputs = await model.predict(signature_name, inputs, limits)
        except web.HTTPRequestEntityTooLarge:
            return _error(
                400,
                f"the request body is over {limits.max_request_bytes} bytes; split it (or raise --max-request-bytes)",
            )
        except RequestError as error:
            return _error(400, str(error))
        return web.json_response(response(outputs, columnar), dumps=_json)

    async def health(request):
        batchers = [b for model in servables.values() for b in model.batchers.values()]
        return web.json_response(
            {
                "status": "ok",
                "models": sorted(servables),
                "predict_requests": sum(b.requests for b in batchers),
                "model_calls": sum(b.calls for b in batchers),
            }
        )

    model_path = "/v1/models/{name:[^/:]+}"
    app.add_routes(
        [
            web.get(model_path, status),
            web.get(model_path + "/versions/{version:[0-9]+}", status),
            web.get(model_path + "/metadata", metadata),
            web.get(model_path + "/versions/{version:[0-9]+}/metadata", metadata),
            web.post(model_path + ":predict", predict),
            web.post(model_path + "/versions/{version:[0-9]+}:predict", predict),
            web.get("/healthz", health),
        ]
    )
    return app


def serve(models: dict[str, str], host: str = "127.0.0.1", port: int = 8501, limits: Limits | None = None) -> None:
    app = build_app(models, limits)
    with socket.socket() as probe:  # refuse a taken port before announcing anything
        try:
            probe.bind((host, port))
        except OSError as error:
            raise GardenError(f"cannot listen on {host}:{port} ({error.strerror}); choose another --port") from error
    for name, path in models.items():
        found = manifest.read(os.path.dirname(os.path.abspath(path)))
        source = f"step {found['step']} of {found['checkpoint']}" if "step" in found else "no manifest beside it"
        print(f"serving {name} at http://{host}:{port}/v1/models/{name}: {path} ({source})", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)

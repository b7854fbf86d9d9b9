"""TF Serving's gRPC API for `garden serve --grpc-port`, with the protos and service bases of
`tensorflow-serving-api`, so the stock `tensorflow_serving.apis` client stubs work unchanged:

    PredictionService.Predict           named TensorProtos in and out (output_filter honoured)
    PredictionService.Classify/Regress  tf.train.Examples through the `serve_examples` signature
    PredictionService.MultiInference    several classify/regress tasks of one model on the same Examples
    PredictionService.GetModelMetadata  the SavedModel's SignatureDefs
    ModelService.GetModelStatus         the state of each version

Requests share the REST server's models, versions, batching queues and generation budget. What
does not fit the signature or the server's limits is INVALID_ARGUMENT with the one line REST answers
with a 400; a generation that waits for memory is RESOURCE_EXHAUSTED (REST's 429); an unknown model
or version is NOT_FOUND."""

import time

import grpc
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from garden.export.requests import Busy, NotFound, RequestError, check_array, check_instances
from garden.signature_names import DEFAULT_SIGNATURE, EXAMPLES_SIGNATURE

CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"  # TF Serving's method names


class Unimplemented(RequestError):
    """A request for something TF Serving answers UNIMPLEMENTED to."""


def input_examples(given) -> list[bytes]:
    """An Input's tf.train.Examples, serialized; with a context, its features are each example's too
    (the example's own win where both have one)."""
    if given.WhichOneof("kind") == "example_list_with_context":
        context = given.example_list_with_context.context
        merged = []
        for example in given.example_list_with_context.examples:
            combined = tf.train.Example()
            combined.CopyFrom(context)
            for name, feature in example.features.feature.items():
                combined.features.feature[name].CopyFrom(feature)
            merged.append(combined.SerializeToString())
        return merged
    return [example.SerializeToString() for example in given.example_list.examples]


def arrays(inputs, specs: dict, max_instances: int) -> dict:
    """A PredictRequest's `inputs` (name -> TensorProto) as arrays checked against the signature's specs."""
    if set(inputs) != set(specs):
        raise RequestError(f"the signature takes inputs {', '.join(sorted(specs))}; send each of them by name")
    found = {}
    for name, proto in inputs.items():
        spec = specs[name]
        if proto.dtype != spec.dtype.as_datatype_enum:
            want, got = types_pb2.DataType.Name(spec.dtype.as_datatype_enum), types_pb2.DataType.Name(proto.dtype)
            raise RequestError(f"input '{name}' takes {want} tensors, got {got}; send {want}")
        try:
            array = tf.make_ndarray(proto)
        except (ValueError, TypeError) as error:  # tensor_content that does not fill the shape, say
            raise RequestError(f"input '{name}' is not a readable TensorProto: {error}") from error
        found[name] = check_array(name, array, spec)
    check_instances(found, max_instances)
    return found


def _named(spec) -> tuple[str, int | None, str | None]:
    """(name, version, label) that a ModelSpec names; None where it names none."""
    return spec.name, spec.version.value if spec.HasField("version") else None, spec.version_label or None


class _Service:
    """What both services share: finding the servable a ModelSpec names, answering errors in TF
    Serving's codes, and counting each call in the server's metrics."""

    def __init__(self, models, limits, metrics):
        self.models, self.limits, self.metrics = models, limits, metrics

    async def _answer(self, api, request, context, answer, spec=None, check=None):
        """`answer(servable)` for the servable `spec` names (the request's model_spec by default) once
        `check()` passes, or the call aborted with TF Serving's code and one line."""
        spec = request.model_spec if spec is None else spec
        start, version, code = time.perf_counter(), "", grpc.StatusCode.OK
        try:
            if check:
                check()
            servable = self.models.find(*_named(spec))
            version = str(servable.version)
            return await answer(servable)
        except NotFound as error:
            code, message = grpc.StatusCode.NOT_FOUND, str(error)
        except Unimplemented as error:
            code, message = grpc.StatusCode.UNIMPLEMENTED, str(error)
        except RequestError as error:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(error)
        except Busy as error:
            code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(error)
        except Exception as error:  # a bug of ours: one line to the client, the server keeps serving
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}"[:300]
        finally:
            labels = self.models.metric_labels(spec.name, version)
            self.metrics.observe(*labels, api, "grpc", code.name, time.perf_counter() - start)
        await context.abort(code, message)

    @staticmethod
    def _spec(servable, response, signature_name=""):
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name


class PredictionService(_Service, prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        async def answer(servable):
            signature = request.model_spec.signature_name or DEFAULT_SIGNATURE
            inputs = arrays(request.inputs, servable.specs(signature), self.limits.max_instances)
            outputs = await servable.predict(signature, inputs, self.limits)
            wanted = list(request.output_filter) or list(outputs)
            unknown = sorted(set(wanted) - set(outputs))
            if unknown:
                outputs_named = ", ".join(sorted(outputs))
                raise RequestError(
                    f"output_filter names {', '.join(unknown)}; the signature's outputs are {outputs_named}"
                )
            response = predict_pb2.PredictResponse()
            self._spec(servable, response, signature)
            for name in wanted:
                response.outputs[name].CopyFrom(tf.make_tensor_proto(outputs[name]))
            return response

        return await self._answer("predict", request, context, answer)

    async def Classify(self, request, context):
        response = classification_pb2.ClassificationResponse()
        return await self._examples("classify", request, context, response, _classifications)

    async def Regress(self, request, context):
        return await self._examples("regress", request, context, regression_pb2.RegressionResponse(), _regressions)

    async def MultiInference(self, request, context):
        """TF Serving's rules: at least one task, every task on the same model, no signature twice,
        methods classify and regress; the Examples are read once per signature."""

        async def answer(servable):
            signatures = [task.model_spec.signature_name or EXAMPLES_SIGNATURE for task in request.tasks]
            examples = input_examples(request.input)
            outputs = {name: await servable.examples(name, examples, self.limits) for name in signatures}
            response = inference_pb2.MultiInferenceResponse()
            for task, name in zip(request.tasks, signatures):
                result = response.results.add()
                self._spec(servable, result, name)
                if task.method_name == CLASSIFY:
                    _classifications(servable, outputs[name], result.classification_result)
                else:
                    _regressions(servable, outputs[name], result.regression_result)
            return response

        spec = request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()
        return await self._answer(
            "multi_inference", request, context, answer, spec=spec, check=lambda: _check_tasks(request.tasks)
        )

    async def _examples(self, api, request, context, response, fill):
        """Classify or Regress: the request's tf.train.Examples through the examples signature, the
        outputs written into `response.result` by `fill(servable, outputs, result)`."""

        async def answer(servable):
            signature = request.model_spec.signature_name
            outputs = await servable.examples(signature, input_examples(request.input), self.limits)
            self._spec(servable, response, signature or EXAMPLES_SIGNATURE)
            fill(servable, outputs, response.result)
            return response

        return await self._answer(api, request, context, answer)

    async def GetModelMetadata(self, request, context):
        async def answer(servable):
            if list(request.metadata_field) != ["signature_def"]:
                raise RequestError("metadata_field must be ['signature_def'], the only metadata a model has")
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            self._spec(servable, response)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            for name, signature_def in servable.signature_defs.items():
                signatures.signature_def[name].CopyFrom(signature_def)
            response.metadata["signature_def"].Pack(signatures)
            return response

        return await self._answer("metadata", request, context, answer)


def _classifications(servable, outputs, result):
    """A classifier's `outputs` into a ClassificationResult: every class, named, with its probability."""
    probabilities, names = servable.classes(outputs)
    for row in probabilities:
        classes = result.classifications.add().classes
        for name, probability in zip(names, row):
            classes.add(label=name, score=float(probability))


def _regressions(servable, outputs, result):
    for score in servable.scores(outputs).reshape(-1):
        result.regressions.add(value=float(score))


def _check_tasks(tasks):
    """Raises TF Serving's error for MultiInference `tasks` it refuses."""
    if not tasks:
        raise RequestError("a MultiInferenceRequest needs at least one task")
    names, signatures = {task.model_spec.name for task in tasks}, set()
    if "" in names:
        raise RequestError("Found ModelSpec with an empty model name.")
    if len(names) > 1:
        raise RequestError("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    for task in tasks:
        signature = task.model_spec.signature_name or EXAMPLES_SIGNATURE
        if signature in signatures:
            raise RequestError(f"Duplicate evaluation of signature: {signature}")
        signatures.add(signature)
        if task.method_name not in (CLASSIFY, REGRESS):
            raise Unimplemented(f"Unsupported signature method_name: {task.method_name}")


class ModelService(_Service, model_service_pb2_grpc.ModelServiceServicer):
    async def GetModelStatus(self, request, context):
        start, code = time.perf_counter(), grpc.StatusCode.OK
        spec = request.model_spec
        try:
            statuses = self.models.statuses(*_named(spec))
        except NotFound as error:
            code = grpc.StatusCode.NOT_FOUND
            await context.abort(code, str(error))
        finally:
            labels = self.models.metric_labels(spec.name, None)
            self.metrics.observe(*labels, "status", "grpc", code.name, time.perf_counter() - start)
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in statuses:
            entry = response.model_version_status.add(
                version=status.version, state=get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
            )
            entry.status.error_code = error_codes_pb2.OK if status.error == "" else error_codes_pb2.UNKNOWN  # as REST
            entry.status.error_message = status.error
        return response


async def start(models, limits, metrics, address: str):
    """A started grpc.aio server on `address` holding both services."""
    options = [
        ("grpc.max_receive_message_length", limits.max_request_bytes),
        ("grpc.max_send_message_length", 2**31 - 1),
    ]
    server = grpc.aio.server(options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(models, limits, metrics), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(models, limits, metrics), server)
    server.add_insecure_port(address)
    await server.start()
    return server

"""TF Serving's REST formats for one signature: a predict request's `instances` (row format) or
`inputs` (columnar format) become named arrays, and outputs become `predictions` or `outputs`.

Strings may be sent as `{"b64": "..."}` (binary data such as images); output strings come back
as text. Numeric inputs take JSON numbers alone (`true` is no 1.0, as TF Serving refuses it too), in
their dtype's range. Anything that does not fit the signature raises `RequestError`, which the
server answers with 400 and `{"error": message}`."""

import base64
import json

import numpy as np
import orjson
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from garden.export.requests import RequestError, check_array, check_instances
from garden.export.signature import example_feature
from garden.signature_names import DEFAULT_SIGNATURE

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _decode_b64(value):
    """A {"b64": ...} value as its bytes; any other value as it is."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as error:  # binascii.Error is a ValueError, as non-ASCII text's is
            raise RequestError(f"invalid base64 in a {{'b64': ...}} value: {error}") from error
    return value


def _utf8(text, what):
    """`text` as UTF-8; JSON's \\ud800 escapes can give a lone surrogate, which is no character."""
    try:
        return text.encode()
    except UnicodeEncodeError as error:
        surrogate = ascii(error.object[error.start])
        raise RequestError(f"{what} holds a lone surrogate {surrogate}; send such bytes as {{'b64': ...}}") from None


def _flat(value):
    """The values inside nested lists, in order (a loop: deep nesting is no recursion)."""
    flat, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat


def _rectangular(value, name, dtype=None):
    try:
        return np.array(value, dtype=dtype)
    except ValueError as error:  # ragged nested lists, or nested past numpy's 64 dimensions
        raise RequestError(f"input '{name}' is not a rectangular array: {error}") from error


def _array(value, spec, name, booleans=True):
    """`value` (a JSON value holding a batch) as an array of the spec's dtype and a fitting shape;
    `booleans`: whether the inputs may hold a true or false at all."""
    if not isinstance(value, list):
        raise RequestError(f"input '{name}' must be a list with one entry per instance, got a single value")
    if spec.dtype == tf.string:  # only strings are sent as {"b64": ...}: numbers skip the walk over every value
        array = _rectangular(value, name, object)
        flat = [_decode_b64(x) for x in array.reshape(-1)]
        if any(isinstance(x, list) for x in flat):
            raise RequestError(f"input '{name}' is not a rectangular array: give every instance as many values")
        if not all(isinstance(x, (str, bytes)) for x in flat):
            raise RequestError(f"input '{name}' takes strings; send text or {{'b64': ...}}")
        texts = [_utf8(x, f"input '{name}'") if isinstance(x, str) else x for x in flat]
        array = np.array(texts, dtype=object).reshape(array.shape)
    else:
        array = _rectangular(value, name)
        if array.dtype.kind not in "biuf" or (spec.dtype.is_integer and array.dtype.kind == "f"):
            got = {"f": "floats", "U": "strings", "O": "mixed values"}.get(array.dtype.kind, array.dtype.name)
            raise RequestError(f"input '{name}' takes {spec.dtype.name} values, not {got}")
        if spec.dtype != tf.bool and (
            array.dtype.kind == "b" or (booleans and any(isinstance(x, bool) for x in _flat(value)))
        ):
            raise RequestError(f"input '{name}' takes {spec.dtype.name} values, not true or false; send numbers")
        if spec.dtype.is_integer and array.size:
            low, high = np.iinfo(spec.dtype.as_numpy_dtype).min, np.iinfo(spec.dtype.as_numpy_dtype).max
            if array.min() < low or array.max() > high:
                raise RequestError(
                    f"input '{name}' takes {spec.dtype.name} values, from {low} to {high}; "
                    f"got values from {array.min()} to {array.max()}"
                )
        with np.errstate(over="ignore"):  # a float past the dtype's range becomes inf, which check_array refuses
            array = array.astype(spec.dtype.as_numpy_dtype)
    return check_array(name, array, spec)


def _loads_slowly(body):
    """`body` read by Python's json, which takes TF Serving's NaN and Infinity literals (the range
    check then refuses them by name) and says where malformed JSON goes wrong."""
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RequestError(f"malformed JSON: {error}") from error
    except RecursionError as error:
        raise RequestError("the JSON is nested too deeply") from error


def _loads(body):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # NaN literals, deep nesting: json reads or names them
        return _loads_slowly(body)


def _signature_name(request):
    name = request.get("signature_name")
    if name is not None and not isinstance(name, str):
        raise RequestError('"signature_name" is the name of a signature, a string')
    return name or ""


def parse(body, specs_of, max_instances):
    """(signature name, named arrays, whether the format is columnar, whether it asks to stream) of a
    predict request's JSON body; `specs_of(signature name)` gives the signature's input specs."""
    request = _loads(body)
    if not isinstance(request, dict) or ("instances" in request) == ("inputs" in request):
        raise RequestError(
            'the request must be a JSON object with either "instances" (row format) or "inputs" (columnar)'
        )
    if not isinstance(request.get("stream", False), bool):
        raise RequestError('"stream" is true or false')
    signature = _signature_name(request) or DEFAULT_SIGNATURE
    specs = specs_of(signature)
    names = list(specs)
    columnar = "inputs" in request
    if columnar:
        given = request["inputs"]
        columns = (
            given
            if isinstance(given, dict) and set(given) == set(names)
            else ({names[0]: given} if len(names) == 1 else None)
        )
    else:
        rows = request["instances"]
        if not isinstance(rows, list) or not rows:
            raise RequestError('"instances" must be a non-empty list')
        objects = all(isinstance(r, dict) and set(r) == set(names) for r in rows)
        columns = (
            {n: [r[n] for r in rows] for n in names} if objects else ({names[0]: rows} if len(names) == 1 else None)
        )
    if columns is None:
        raise RequestError(f"the signature takes inputs {', '.join(sorted(names))}; send each of them by name")
    # the inputs hold a true or false only where the body holds more than the request's own ("stream")
    tokens = body.count(b"true") + body.count(b"false") if isinstance(body, bytes) else None
    booleans = tokens is None or tokens > sum(isinstance(v, bool) for v in request.values())
    arrays = {name: _array(columns[name], specs[name], name, booleans) for name in names}
    check_instances(arrays, max_instances)
    return signature, arrays, columnar, request.get("stream", False)


def _feature(name, value, dtype):
    """A JSON feature value (a value or nested lists of them; {"b64": ...} for bytes) as a
    tf.train.Feature: the list `dtype` (the signature's, when the manifest gives it) is parsed from."""
    values = [_decode_b64(v) for v in _flat(value)]
    if dtype is None:
        text = any(isinstance(v, (str, bytes)) for v in values)
        dtype = "string" if text else "float32" if any(isinstance(v, float) for v in values) else "int64"
    if dtype == "string":
        if not all(isinstance(v, (str, bytes)) for v in values):
            raise RequestError(f"feature '{name}' takes strings; send text or {{'b64': ...}}")
        return example_feature("bytes", [_utf8(v, f"feature '{name}'") if isinstance(v, str) else v for v in values])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise RequestError(f"feature '{name}' takes numbers")
    if "float" in dtype:
        if not all(abs(v) <= _FLOAT32_MAX for v in values):  # NaN and infinities too
            raise RequestError(f"feature '{name}' takes finite float32 values, up to {_FLOAT32_MAX:g} in size")
        return example_feature("float", values)
    if not all(isinstance(v, int) or v.is_integer() for v in values):
        raise RequestError(f"feature '{name}' takes integers")
    if not all(_INT64_MIN <= v <= _INT64_MAX for v in values):
        raise RequestError(f"feature '{name}' takes int64 values, from {_INT64_MIN} to {_INT64_MAX}")
    return example_feature("int64", [int(v) for v in values])


def parse_examples(body, dtypes: dict[str, str]) -> tuple[str, list[bytes]]:
    """(signature name, serialized tf.train.Examples) of a classify or regress request's JSON body,
    TF Serving's {"signature_name": ..., "context": {...}, "examples": [{feature: value}, ...]};
    `dtypes` gives each feature's dtype where known."""
    request = _loads(body)
    rows = request.get("examples") if isinstance(request, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise RequestError('the request must be a JSON object with "examples": a non-empty list of {feature: value}')
    context = request.get("context") or {}
    if not isinstance(context, dict):
        raise RequestError('"context" must be a JSON object of {feature: value}, shared by every example')
    serialized = []
    for row in rows:
        feature = {name: _feature(name, value, dtypes.get(name)) for name, value in {**context, **row}.items()}
        serialized.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return _signature_name(request), serialized


def _jsonable(array):
    if array.dtype == object or array.dtype.kind == "S":
        return np.vectorize(lambda x: x.decode("utf-8", "replace") if isinstance(x, bytes) else x, otypes=[object])(
            array
        ).tolist()
    return array.tolist()


def response(outputs, columnar):
    """The JSON body of a predict response for `outputs` (name -> array with a batch axis)."""
    values = {name: _jsonable(np.asarray(a)) for name, a in outputs.items()}
    if columnar:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    count = len(next(iter(values.values())))
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(count)]}


def tensor_info(spec):
    """A TensorSpec as a SignatureDef's TensorInfo in TF Serving's metadata JSON."""
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape]
    return {
        "dtype": types_pb2.DataType.Name(spec.dtype.as_datatype_enum),
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": spec.name or "",
    }

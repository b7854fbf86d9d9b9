"""SavedModel and TFLite exports of a real trained run, checked against the Keras model."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from conftest import ROOT, garden
from PIL import Image

from garden.data.mnist import mnist
from garden.run import Run

MODES = ("none", "dynamic", "float16", "int8", "16x8")
# max |probability - Keras's| over the 1000 held-out test images that each artifact, re-run here,
# may show (measured when written: SavedModel 2e-7, none 1.4e-6, float16 3.5e-3, dynamic 0.06)
TOLERANCES = {
    "saved_model": 1e-5,
    "model_none.tflite": 1e-5,
    "model_float16.tflite": 1e-2,
    "model_dynamic.tflite": 0.2,
}
# the share of images on which a quantized artifact names Keras's most likely digit (measured when
# written: dynamic 0.999, 16x8 0.998, int8 0.993)
AGREEMENT = {"model_dynamic.tflite": 0.99, "model_int8.tflite": 0.98, "model_16x8.tflite": 0.98}


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    quantize = [a for mode in MODES for a in ("--quantize", mode)]
    garden("export", tiny_run, "--format", "saved_model", "--format", "tflite", *quantize, "--out", out)
    return out


def keras_probabilities(run_dir, images):
    """The Keras model's digit probabilities: the run folder's model's logits, softmaxed here in float64."""
    logits = np.asarray(Run(str(run_dir)).model({"image": images}, training=False)["logits"], np.float64)
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def litert(path, **inputs):
    """`path`'s serving_default signature run on `inputs` in LiteRT's own interpreter, 100 rows a call."""
    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    count = len(next(iter(inputs.values())))
    parts = [runner(**{n: a[i : i + 100] for n, a in inputs.items()}) for i in range(0, count, 100)]
    return {key: np.concatenate([part[key] for part in parts]) for key in ("probabilities", "class_id")}


@pytest.fixture(scope="module")
def rerun(exported, tiny_run):
    """Every written artifact re-run here, not through the exporter (the SavedModel with
    tf.saved_model.load, each .tflite in LiteRT), on the 1000 held-out test images:
    (labels, Keras's probabilities, {artifact: its outputs})."""
    test = mnist("test").take(1000)
    images = test.features["image"]
    saved = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"]
    outputs = {"saved_model": {k: v.numpy() for k, v in saved(image=tf.constant(images)).items()}}
    for mode in MODES:
        outputs[f"model_{mode}.tflite"] = litert(exported / f"model_{mode}.tflite", image=images)
    return test.labels, keras_probabilities(tiny_run, images), outputs


def test_each_artifact_rerun_on_its_own_matches_the_keras_model(rerun):
    """Each artifact's probabilities are within its mode's tolerance of the Keras model's and the
    digit it names is Keras's most likely one up to that tolerance; a quantized one names Keras's
    digit on at least its AGREEMENT share of the images. Each accuracy is within a point of Keras's."""
    labels, keras, outputs = rerun
    keras_accuracy = np.mean(keras.argmax(axis=-1) == labels)
    assert set(outputs) == set(TOLERANCES) | set(AGREEMENT)
    for name, artifact in outputs.items():
        if name in TOLERANCES:
            error = np.max(np.abs(artifact["probabilities"] - keras))
            named = keras[np.arange(len(keras)), artifact["class_id"]]  # Keras's probability of the digit named
            assert error <= TOLERANCES[name] and np.all(named >= keras.max(axis=-1) - 2 * TOLERANCES[name]), (
                name,
                error,
            )
        if name in AGREEMENT:
            agreement = np.mean(artifact["class_id"] == keras.argmax(axis=-1))
            assert agreement >= AGREEMENT[name], (name, agreement)
        accuracy = np.mean(artifact["class_id"] == labels)
        assert abs(accuracy - keras_accuracy) <= 0.01, (name, accuracy, keras_accuracy)


def test_manifest_records_what_the_artifacts_measure_when_rerun(exported, rerun):
    """The manifest's accuracies and max |Δ| are the ones measured here (the bounds they must meet
    are the test above), its sizes the files', and int8's empty `float_ops` is what the flatbuffer
    holds: every op of the CNN in int8."""
    labels, keras, outputs = rerun
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["signatures"] == {
        "serving_default": {"inputs": {"image": {"dtype": "float32", "shape": [None, 28, 28, 1]}}},
        "serving_bytes": {"inputs": {"image_bytes": {"dtype": "string", "shape": [None]}}},
        "serve_examples": {  # tf.train.Examples holding the encoded images, for TF Serving's Classify
            "inputs": {"examples": {"dtype": "string", "shape": [None]}},
            "features": {"image_bytes": {"dtype": "string", "shape": [None]}},
        },
    }
    assert set(manifest["outputs"]) == {"probabilities", "class_id", "label"}
    assert manifest["labels"] == [str(d) for d in range(10)]
    assert manifest["held_out"] == {"split": "test", "examples": len(labels)}
    assert manifest["keras_accuracy"] == pytest.approx(np.mean(keras.argmax(axis=-1) == labels))
    assert set(manifest["artifacts"]) == set(outputs)
    for name, entry in manifest["artifacts"].items():
        error = np.max(np.abs(outputs[name]["probabilities"] - keras))
        assert entry["max_abs_error"] == pytest.approx(error, abs=1e-5), name
        assert entry["accuracy"] == pytest.approx(np.mean(outputs[name]["class_id"] == labels), abs=1.5e-3), name
    assert manifest["artifacts"]["saved_model"]["error_bound"] == 1e-5
    assert set(manifest["artifacts"]["saved_model"]["signatures"]) == {
        "serving_default",
        "serving_bytes",
        "serve_examples",
    }
    assert all(manifest["artifacts"][f"model_{m}.tflite"]["latency_ms"] > 0 for m in MODES)
    sizes = {m: (exported / f"model_{m}.tflite").stat().st_size for m in MODES}
    assert all(manifest["artifacts"][f"model_{m}.tflite"]["size_bytes"] == sizes[m] for m in MODES)
    assert sizes["int8"] < sizes["none"] / 2 and sizes["float16"] < sizes["none"]
    assert manifest["artifacts"]["model_int8.tflite"]["float_ops"] == []
    int8 = Interpreter(
        model_path=str(exported / "model_int8.tflite"),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,  # ops as written
    )
    int8.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in int8.get_tensor_details()}
    ops = {(op["op_name"], dtypes[op["outputs"][0]].__name__) for op in int8._get_ops_details()}
    assert ("CONV_2D", "int8") in ops and {name for name, dtype in ops if dtype == "float32"} == {"DEQUANTIZE"}


def test_saved_model_reloads_with_named_inputs_and_outputs(exported, tiny_run):
    signature = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]
    images = mnist("test").features["image"][:8]
    outputs = signature(image=tf.constant(images))
    assert outputs["probabilities"].shape == (8, 10) and outputs["class_id"].dtype == tf.int32
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def tensors_of(exported, images):
    """The exported SavedModel's serving_default outputs for float `images`."""
    return tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"](image=tf.constant(images))


def test_saved_model_takes_encoded_images(exported):
    signature = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_bytes"]
    test = mnist("test")
    pixels = np.round(test.features["image"][:8] * 255).astype(np.uint8)
    pngs = [tf.io.encode_png(image) for image in pixels]
    large_jpeg = tf.io.encode_jpeg(tf.image.resize(pixels[0], (56, 56)).numpy().astype(np.uint8), quality=100)
    outputs = signature(image_bytes=tf.stack(pngs + [large_jpeg]))
    tensors = tensors_of(exported, pixels / np.float32(255))
    np.testing.assert_allclose(outputs["probabilities"][:8], tensors["probabilities"], atol=1e-6)
    resized = tf.image.resize(tf.cast(tf.io.decode_jpeg(large_jpeg), tf.float32) / 255, (28, 28))  # bilinear
    np.testing.assert_allclose(
        outputs["probabilities"][8], tensors_of(exported, resized[None])["probabilities"][0], atol=1e-5
    )
    assert [x.decode() for x in outputs["label"].numpy()] == [str(c) for c in outputs["class_id"].numpy()]


def test_tflite_of_a_signature_needing_flex_is_refused_naming_the_op(exported, tiny_run, tmp_path):
    """The op named is one the signature's graph runs that TFLite has no kernel for: the first the
    interpreter meets (the image header's Substr, read before DecodeImage)."""
    out = tmp_path / "flex"
    result = garden("export", tiny_run, "--format", "tflite", "--signature", "serving_bytes", "--out", out, check=False)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    prefix = "garden: error: TFLite none refused: signature 'serving_bytes' needs TensorFlow op "
    assert message.startswith(prefix), message
    graph = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_bytes"].graph.as_graph_def()
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
    named = message[len(prefix) :].split(",")[0]
    assert named in ops & {"Substr", "DecodeImage", "DecodeRaw", "ExtractJpegShape"}, (named, sorted(ops))
    assert "Flex" in message and "no TFLite model was written (export --signature serving_default" in message
    assert not out.exists()  # nothing written, not even the folder


def test_predict_gives_what_each_artifact_gives_when_run_directly(exported, tiny_run, tmp_path):
    """`garden predict` of each artifact prints the outputs of that artifact called here (through
    tf.saved_model or LiteRT) on the same images; the SavedModel's digits are the Keras model's."""
    images = mnist("test").features["image"][:5]
    np.save(tmp_path / "images.npy", images[..., 0])  # no channel axis: predict adds it
    direct = {"saved_model": {k: v.numpy() for k, v in tensors_of(exported, images).items()}}
    direct |= {name: litert(exported / name, image=images) for name in ("model_none.tflite", "model_int8.tflite")}
    for artifact, outputs in direct.items():
        rows = [
            json.loads(line)
            for line in garden("predict", exported / artifact, tmp_path / "images.npy").stdout.splitlines()
        ]
        assert [r["class_id"] for r in rows] == outputs["class_id"].tolist(), artifact
        np.testing.assert_allclose([r["probabilities"] for r in rows], outputs["probabilities"], atol=1e-6)
        assert [r["label"] for r in rows] == [str(c) for c in outputs["class_id"]]
    assert direct["saved_model"]["class_id"].tolist() == keras_probabilities(tiny_run, images).argmax(axis=-1).tolist()


def test_predict_takes_uint8_pixels_and_refuses_unscaled_or_non_finite_floats(exported, tmp_path):
    """uint8 0-255 images (Keras's MNIST form) predict as their 0-1 floats do; 0-255 floats and NaN
    are refused in one line (they would run, and answer wrong)."""
    images = mnist("test").features["image"][:6, :, :, 0]
    pixels = np.round(images * 255).astype(np.uint8)
    np.save(tmp_path / "u8.npy", pixels)
    np.save(tmp_path / "floats.npy", pixels.astype(np.float32) / 255)
    for artifact in ("saved_model", "model_none.tflite"):
        as_u8, as_floats = (
            [json.loads(line) for line in garden("predict", exported / artifact, tmp_path / name).stdout.splitlines()]
            for name in ("u8.npy", "floats.npy")
        )
        assert as_u8 == as_floats
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["input_ranges"] == {"image": [0.0, 1.0]}
    for name, array, message in (
        ("f255.npy", pixels.astype(np.float32), "input 'image' takes values in [0, 1]; got values from 0 to"),
        ("nan.npy", np.full((1, 28, 28), np.nan, np.float32), "input 'image' holds NaN or infinite values"),
        ("text.npy", np.array(["a", "b"]), "holds str32 values of shape (2,); predict takes numbers"),
    ):
        np.save(tmp_path / name, array)
        result = garden("predict", exported / "saved_model", tmp_path / name, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().startswith("garden: error: ") and message in result.stderr, result.stderr


def test_predict_reads_png_images(exported, tmp_path):
    test = mnist("test")
    png = tmp_path / "digit.png"
    Image.fromarray((test.features["image"][0, :, :, 0] * 255).astype(np.uint8)).save(png)
    row = json.loads(garden("predict", exported / "model_none.tflite", png).stdout)
    assert row["class_id"] == int(test.labels[0])


def test_wrong_shaped_predict_input_is_one_line(exported, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 27, 28), np.float32))
    result = garden("predict", exported / "saved_model", tmp_path / "bad.npy", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "garden: error: input has shape (3, 27, 28) but the model's input 'image' expects (N, 28, 28, 1)"
    )


def test_artifact_over_its_bound_is_refused_and_not_written(tiny_run, tmp_path):
    out = tmp_path / "export"
    result = garden(
        "export",
        tiny_run,
        "--format",
        "tflite",
        "--quantize",
        "dynamic",
        "--max-error",
        "1e-12",
        "--out",
        out,
        check=False,
    )
    assert result.returncode == 2
    assert "model_dynamic.tflite" in result.stdout and "refused" in result.stdout  # the table still shows it
    message = result.stderr.strip().splitlines()[-1]  # after the converter's own log lines
    assert message.startswith("garden: error: TFLite dynamic refused: max |difference| from the Keras model is")
    assert "over the bound 1e-12" in message and "nothing was written" in message
    assert not (out / "model_dynamic.tflite").exists() and not (out / "manifest.json").exists()
    assert not out.exists()  # no staging leftovers, and no empty folder
    negative = garden("export", tiny_run, "--max-error", "-1", "--out", out, check=False)
    assert negative.returncode == 2 and negative.stdout == "" and not out.exists()  # refused before any work
    assert negative.stderr.strip() == "garden: error: --max-error must be a number of 0 or more (got -1.0)"


def test_an_export_of_a_newer_checkpoint_removes_the_older_artifacts(tiny_run, tmp_path):
    """A SavedModel exported at step 200, then a TFLite export once the run reached 300: the folder
    keeps only step 300's artifacts, each naming its step."""
    run_dir, out = tmp_path / "run", tmp_path / "export"
    shutil.copytree(tiny_run, run_dir)
    state = run_dir / "model" / "checkpoint"
    newest = state.read_text()
    state.write_text(newest.replace('model_checkpoint_path: "ckpt-300"', 'model_checkpoint_path: "ckpt-200"'))
    garden("export", run_dir, "--out", out)
    older = json.loads((out / "manifest.json").read_text())
    assert older["step"] == older["artifacts"]["saved_model"]["step"] == 200
    state.write_text(newest)
    printed = garden("export", run_dir, "--format", "tflite", "--out", out).stdout
    assert printed.splitlines()[0].startswith(f"replacing saved_model of {run_dir}/model/ckpt-200 in {out} with ")
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"model_none.tflite"} and not (out / "saved_model").exists()
    assert manifest["step"] == manifest["artifacts"]["model_none.tflite"]["step"] == 300
    assert manifest["weights_fingerprint"] != older["weights_fingerprint"]


def test_export_and_predict_print_only_gardens_own_lines(tiny_run, tmp_path):
    """Converter, interpreter and absl lines stay hidden (a new process, so C++ output is seen);
    --verbose shows them."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def cli(*args):
        command = [sys.executable, "-m", "garden.cli", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, check=True)

    exported = cli("export", tiny_run, "--format", "tflite", "--quantize", "dynamic", "--out", tmp_path)
    assert exported.stderr == "", exported.stderr
    assert exported.stdout.startswith("accuracy and parity") and "manifest:" in exported.stdout.splitlines()[-1]
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28), np.float32))
    predicted = cli("predict", tmp_path / "model_dynamic.tflite", tmp_path / "x.npy")
    assert predicted.stderr == "" and json.loads(predicted.stdout)["class_id"] in range(10)
    verbose = cli("--verbose", "predict", tmp_path / "model_dynamic.tflite", tmp_path / "x.npy")
    assert "XNNPACK" in verbose.stderr


def test_export_to_a_folder_it_cannot_write_is_one_line_before_any_work(tiny_run, tmp_path):
    (tmp_path / "file").write_text("")
    result = garden("export", tiny_run, "--out", tmp_path / "file" / "export", check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        f"garden: error: cannot write to {tmp_path / 'file' / 'export'} (Not a directory); pass --out a folder you "
        "can write"
    )

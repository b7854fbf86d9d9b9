"""SavedModel and TFLite exports of a real trained run, checked against the Keras model."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, garden
from PIL import Image

from garden.data.mnist import mnist
from garden.export.reference import TFLITE_BOUNDS as BOUNDS
from garden.export.tflite import tflite_runner
from garden.run import Run


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    garden(
        "export",
        tiny_run,
        "--format",
        "saved_model",
        "--format",
        "tflite",
        *[a for mode in BOUNDS for a in ("--quantize", mode)],
        "--out",
        out,
    )
    return out


def test_each_artifact_rerun_on_its_own_matches_the_keras_model(exported, tiny_run):
    """Every written artifact, loaded here (the SavedModel with tf.saved_model, each .tflite in
    LiteRT), against the Keras model of the run folder on the 1000 held-out test images."""
    test = mnist("test").take(1000)
    images, labels = test.features["image"], test.labels
    run = Run(str(tiny_run))
    keras = run.task.serving_outputs(run.model(images, training=False))
    keras_accuracy = np.mean(keras["class_id"].numpy() == labels)
    saved = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"]
    outputs = {"saved_model": saved(image=tf.constant(images))}
    for mode in BOUNDS:
        runner = tflite_runner(path=str(exported / f"model_{mode}.tflite"))
        outputs[f"model_{mode}.tflite"] = {
            key: np.concatenate([runner(image=images[i : i + 100])[key] for i in range(0, 1000, 100)])
            for key in ("probabilities", "class_id")
        }
    bounds = {"saved_model": 1e-5, **{f"model_{m}.tflite": b for m, b in BOUNDS.items()}}
    for name, artifact in outputs.items():
        if bounds[name] is not None:
            np.testing.assert_allclose(
                artifact["probabilities"], keras["probabilities"], atol=bounds[name], err_msg=name
            )
        assert abs(np.mean(np.asarray(artifact["class_id"]) == labels) - keras_accuracy) <= 0.01, name


def test_manifest_records_parity_and_accuracy_within_bounds(exported):
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
    assert manifest["held_out"] == {"split": "test", "examples": 1000}
    assert set(manifest["artifacts"]) == {"saved_model"} | {f"model_{m}.tflite" for m in BOUNDS}
    for name, entry in manifest["artifacts"].items():
        assert entry["max_abs_error"] <= (entry["error_bound"] or 0.5), name  # quantized: reported, judged by accuracy
        assert abs(entry["accuracy"] - manifest["keras_accuracy"]) <= 0.01, name
    assert manifest["artifacts"]["model_int8.tflite"]["float_ops"] == []  # a CNN keeps every op in int8
    assert manifest["artifacts"]["saved_model"]["error_bound"] == 1e-5
    assert set(manifest["artifacts"]["saved_model"]["signatures"]) == {
        "serving_default",
        "serving_bytes",
        "serve_examples",
    }
    assert all(manifest["artifacts"][f"model_{m}.tflite"]["latency_ms"] > 0 for m in BOUNDS)
    sizes = {m: manifest["artifacts"][f"model_{m}.tflite"]["size_bytes"] for m in BOUNDS}
    assert sizes["int8"] < sizes["none"] / 2 and sizes["float16"] < sizes["none"]


def test_saved_model_reloads_with_named_inputs_and_outputs(exported, tiny_run):
    signature = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["image"]
    images = mnist("test").features["image"][:8]
    outputs = signature(image=tf.constant(images))
    assert outputs["probabilities"].shape == (8, 10) and outputs["class_id"].dtype == tf.int32
    np.testing.assert_allclose(outputs["probabilities"].numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_saved_model_takes_encoded_images(exported):
    signature = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_bytes"]
    test = mnist("test")
    pixels = np.round(test.features["image"][:8] * 255).astype(np.uint8)
    pngs = [tf.io.encode_png(image) for image in pixels]
    large_jpeg = tf.io.encode_jpeg(tf.image.resize(pixels[0], (56, 56)).numpy().astype(np.uint8), quality=100)
    outputs = signature(image_bytes=tf.stack(pngs + [large_jpeg]))
    tensors = tf.saved_model.load(str(exported / "saved_model")).signatures["serving_default"](
        image=pixels / np.float32(255)
    )
    np.testing.assert_allclose(outputs["probabilities"][:8], tensors["probabilities"], atol=1e-6)
    assert outputs["class_id"][8] == outputs["class_id"][0]  # resized to 28x28 before the model
    assert [x.decode() for x in outputs["label"].numpy()] == [str(c) for c in outputs["class_id"].numpy()]


def test_tflite_of_a_signature_needing_flex_is_refused_naming_the_op(tiny_run, tmp_path):
    out = tmp_path / "flex"
    result = garden("export", tiny_run, "--format", "tflite", "--signature", "serving_bytes", "--out", out, check=False)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(
        "garden: error: TFLite none refused: signature 'serving_bytes' needs TensorFlow op DecodeImage"
    )
    assert "Flex" in message and "no TFLite model was written (export --signature serving_default" in message
    assert not out.exists()  # nothing written, not even the folder


def test_predict_agrees_across_saved_model_and_tflite(exported, tmp_path):
    test = mnist("test")
    np.save(tmp_path / "images.npy", test.features["image"][:5, :, :, 0])  # no channel axis: predict adds it
    rows = {}
    for artifact in ("saved_model", "model_none.tflite", "model_int8.tflite"):
        out = garden("predict", exported / artifact, tmp_path / "images.npy").stdout
        rows[artifact] = [json.loads(line) for line in out.splitlines()]
    keras_like = [r["class_id"] for r in rows["saved_model"]]
    assert [r["class_id"] for r in rows["model_none.tflite"]] == keras_like
    assert sum(a == b for a, b in zip((r["class_id"] for r in rows["model_int8.tflite"]), keras_like)) >= 4
    np.testing.assert_allclose(
        [r["probabilities"] for r in rows["model_int8.tflite"]],
        [r["probabilities"] for r in rows["saved_model"]],
        atol=0.1,
    )
    assert np.mean(np.array(keras_like) == test.labels[:5]) >= 0.8
    assert rows["saved_model"][0]["label"] == str(keras_like[0])


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

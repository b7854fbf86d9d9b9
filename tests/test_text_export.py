"""Text exports take raw strings: tokenization in the graph (SavedModel and TFLite with
tensorflow-text's custom ops), checked against the Keras model on real R8 documents."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text
from ai_edge_litert.interpreter import InterpreterWithCustomOps
from conftest import SHARED_DATA, TINY_TEXT, garden

from garden.data import text_datasets
from garden.data.tokenizers import serving_tokenizer
from garden.export import tflite
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.run import Run

AG_NEWS = SHARED_DATA / "agnews" / "train.tsv"
ODD_TEXT = ["Café naïve — “quoted” 東京 😀 tab\there", "x" * 150, "don't stop!!! $5.00 ...", "ÅNGSTRÖM straße", ""]


def r8_task(*sets):
    return TASKS.get("text_classification")(experiment_config("r8_minilm", sets=[*TINY_TEXT, *sets]).task)


def r8_texts(count):
    return list(
        text_datasets._corpus("reuters_r8")(experiment_config("r8_minilm").task.test_data).features["text"][:count]
    )


def test_serving_tokenizer_gives_the_training_ids():
    task = r8_task()
    texts = r8_texts(300) + ODD_TEXT
    if AG_NEWS.exists():
        texts += [line.split("\t")[0] for line in AG_NEWS.read_text(encoding="utf-8").splitlines()[1:2001]]
    expected = task.tokenizer(tf.constant(texts))
    given = serving_tokenizer(task.tokenizer)(tf.constant(texts))
    assert [list(map(int, row)) for row in expected] == given.to_list()


@pytest.mark.parametrize("length", [16, 64])
def test_serving_packer_matches_training_packer_on_single_texts_and_pairs(length):
    task = r8_task(f"task.model.tokenizer.sequence_length={length}")
    texts = tf.constant(r8_texts(40))
    pairs = tf.constant(r8_texts(40)[::-1])
    pack_both = tf.function(
        lambda *texts: [task.pack(*map(task.tokenizer, texts)), task.pack_in_serving(*map(task.tokenizer, texts))]
    )
    for segments in ([texts], [texts, pairs]):
        expected, given = pack_both(*segments)
        for name in expected:
            np.testing.assert_array_equal(expected[name].numpy(), given[name].numpy(), err_msg=name)


MODES = ("none", "dynamic", "float16", "int8")
# max |probability - Keras's| over the held-out documents that each artifact, re-run here, may show
# (measured when written: SavedModel and none 2e-7, float16 3e-4, dynamic 3e-3, int8 2e-2); int8 is
# judged by the task instead: the same class as Keras on at least INT8_AGREEMENT of the documents
# (measured: all 300)
TOLERANCES = {
    "saved_model": 1e-5,
    "model_none.tflite": 1e-5,
    "model_float16.tflite": 5e-3,
    "model_dynamic.tflite": 2e-2,
}
INT8_AGREEMENT = 0.97


@pytest.fixture(scope="module")
def text_export(text_run, tmp_path_factory):
    """The SavedModel and a .tflite of each of MODES, exported once; (folder, what export printed)."""
    out = tmp_path_factory.mktemp("export")
    quantize = [a for mode in MODES for a in ("--quantize", mode)]
    printed = garden("export", text_run, "--format", "saved_model", "--format", "tflite", *quantize, "--out", out)
    return out, printed.stdout


def keras_probabilities(run, texts):
    """The Keras model's class probabilities for raw `texts`: its logits, softmaxed here in float64."""
    logits = run.model(run.task.preprocess({"text": tf.constant(texts)}), training=False)["logits"]
    logits = np.asarray(logits, np.float64)
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def rerun(text_run, text_export):
    """Every written artifact re-run here on the 300 held-out R8 test documents (then ODD_TEXT), not
    through the exporter: each .tflite in LiteRT with tensorflow-text's ops, the SavedModel with
    tf.saved_model.load. (labels, Keras's probabilities, {artifact: its served outputs})."""
    folder, _ = text_export
    run = Run(str(text_run))
    held_out = run.task.load(run.config.task.test_data, run.label_names)
    texts = np.asarray([*held_out.features["text"], *ODD_TEXT], dtype=object)
    served = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"](text=tf.constant(texts))
    outputs = {"saved_model": {name: tensor.numpy() for name, tensor in served.items()}}
    for mode in MODES:
        interpreter = InterpreterWithCustomOps(
            custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS,
            model_path=str(folder / f"model_{mode}.tflite"),
        )
        outputs[f"model_{mode}.tflite"] = interpreter.get_signature_runner("serving_default")(text=texts)
    return held_out.labels, keras_probabilities(run, texts), outputs


def test_saved_model_takes_raw_strings_and_token_ids(text_export):
    text_export, _ = text_export
    signatures = tf.saved_model.load(str(text_export / "saved_model")).signatures
    assert set(signatures) == {"serving_default", "serving_tokens", "serve_examples"}
    texts = r8_texts(6)
    raw = signatures["serving_default"](text=tf.constant(texts))
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()]))}
            )
        )
        for t in texts
    ]  # as TF Serving's Classify clients write them
    served = signatures["serve_examples"](examples=tf.constant([e.SerializeToString() for e in examples]))
    np.testing.assert_array_equal(served["probabilities"], raw["probabilities"])
    labels = json.loads((text_export / "manifest.json").read_text())["labels"]
    assert [x.decode() for x in raw["label"].numpy()] == [labels[i] for i in raw["class_id"].numpy()]
    task = r8_task()
    tokens = signatures["serving_tokens"](**task.preprocess({"text": tf.constant(texts)}))
    np.testing.assert_allclose(tokens["probabilities"], raw["probabilities"], atol=1e-6)


def test_each_artifact_rerun_on_its_own_matches_keras_within_its_modes_tolerance(rerun):
    """Each artifact's probabilities, on the held-out documents and ODD_TEXT, are within its mode's
    tolerance of the Keras model's, and the class it names is Keras's most likely one up to that
    tolerance (int8: Keras's most likely class on at least INT8_AGREEMENT of the documents); its
    accuracy is within a point of Keras's."""
    labels, keras, outputs = rerun
    keras_accuracy = np.mean(keras[: len(labels)].argmax(axis=-1) == labels)
    assert keras_accuracy > 0.7
    for name, served in outputs.items():
        named = keras[np.arange(len(keras)), served["class_id"]]  # Keras's probability of the class served
        if name in TOLERANCES:
            error = np.max(np.abs(served["probabilities"] - keras))
            assert error <= TOLERANCES[name], (name, error)
            assert np.all(named >= keras.max(axis=-1) - 2 * TOLERANCES[name]), name
        else:
            agreement = np.mean(served["class_id"] == keras.argmax(axis=-1))
            assert agreement >= INT8_AGREEMENT, (name, agreement)
        accuracy = np.mean(served["class_id"][: len(labels)] == labels)
        assert abs(accuracy - keras_accuracy) <= 0.01, (name, accuracy, keras_accuracy)


def test_the_manifest_records_what_the_artifacts_measure_when_rerun(text_export, rerun):
    """The accuracies the manifest reports are the ones measured here (the exporter's verdicts are
    the tests above); each .tflite lists the text ops it needs and its file's size."""
    folder, _ = text_export
    labels, keras, outputs = rerun
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["signatures"]["serving_default"]["inputs"] == {"text": {"dtype": "string", "shape": [None]}}
    assert manifest["held_out"] == {"split": "test", "examples": len(labels)}
    assert manifest["keras_accuracy"] == pytest.approx(np.mean(keras[: len(labels)].argmax(axis=-1) == labels))
    assert set(manifest["artifacts"]) == set(outputs)
    for name, entry in manifest["artifacts"].items():
        measured = np.mean(outputs[name]["class_id"][: len(labels)] == labels)
        assert entry["accuracy"] == pytest.approx(measured, abs=1.5 / len(labels)), name  # a near tie may flip
        if name.endswith(".tflite"):
            assert entry["size_bytes"] == (folder / name).stat().st_size
            assert entry["op_registerers"] == "tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS"
            assert {"FastBertNormalize", "FastWordpieceTokenizeWithOffsets"} <= set(entry["custom_ops"])
    sizes = {m: (folder / f"model_{m}.tflite").stat().st_size for m in MODES}
    assert sizes["int8"] < 0.5 * sizes["none"] and sizes["dynamic"] < sizes["float16"] < sizes["none"]


def test_tflite_runs_raw_strings_with_the_tensorflow_text_registrar(text_export):
    text_export, _ = text_export
    texts = np.array(r8_texts(8), dtype=object)
    interpreter = InterpreterWithCustomOps(
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS,
        model_path=str(text_export / "model_none.tflite"),
    )
    outputs = interpreter.get_signature_runner("serving_default")(text=texts)
    saved = tf.saved_model.load(str(text_export / "saved_model")).signatures["serving_default"](text=tf.constant(texts))
    np.testing.assert_array_equal(outputs["class_id"], saved["class_id"].numpy())
    np.testing.assert_allclose(outputs["probabilities"], saved["probabilities"].numpy(), atol=1e-4)


def test_predict_reads_a_text_file_one_example_per_line(text_export, tmp_path):
    text_export, _ = text_export
    texts = r8_texts(3)
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    rows = [
        json.loads(line)
        for line in garden("predict", text_export / "model_none.tflite", tmp_path / "texts.txt").stdout.splitlines()
    ]
    saved = tf.saved_model.load(str(text_export / "saved_model")).signatures["serving_default"](text=tf.constant(texts))
    assert [r["class_id"] for r in rows] == saved["class_id"].numpy().tolist()
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "number.jsonl").write_text('{"text": 5}\n')
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    for name, message in [
        ("empty.txt", f"{tmp_path / 'empty.txt'} holds no examples; give it one per line (or one array)"),
        ("number.jsonl", f"field 'text' of {tmp_path / 'number.jsonl'} is int 5 in row 1; the model takes text there"),
        ("latin1.txt", f"{tmp_path / 'latin1.txt'} is not UTF-8 text (invalid continuation byte at byte 3)"),
    ]:
        result = garden("predict", text_export / "model_none.tflite", tmp_path / name, check=False)
        assert result.returncode == 2 and result.stderr.startswith(f"garden: error: {message}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def op_types(content):
    """(op name, its output's dtype name, its first input's scale) for every op of a TFLite model."""
    model = tflite.interpreter(content)
    tensors = {t["index"]: t for t in model.get_tensor_details()}
    return {
        (op["op_name"], tensors[op["outputs"][0]]["dtype"].__name__, tensors[op["inputs"][0]]["quantization"][0])
        for op in model._get_ops_details()
        if op["inputs"].size and op["outputs"].size
    }


def test_int8_keeps_the_masked_attention_scores_and_layer_norms_in_float(text_export):
    """On padded examples, all-int8 attention scores share one scale with the -1e9 padding mask (a step
    of ~4e6, so every real score rounds to the same value); FLOAT_OPS keeps them, and the LayerNorm
    statistics, in float32 while the matmuls stay int8."""
    text_export, _ = text_export
    short = [" ".join(text.split()[:8]) for text in r8_texts(32)]  # padded, so the mask is in the scores
    packed = r8_task().preprocess({"text": tf.constant(short)})
    calibration = {name: tensor.numpy() for name, tensor in packed.items()}
    calibrated = tflite.convert(str(text_export / "saved_model"), "serving_tokens", "int8", calibration)
    softmax_input_scales = [scale for name, _, scale in op_types(tflite.quantize_int8(calibrated)) if name == "SOFTMAX"]
    assert max(softmax_input_scales) > 1e6 and min(softmax_input_scales) < 1  # attention's, and the head's
    kept = {(name, dtype) for name, dtype, _ in op_types(tflite.quantize_int8(calibrated, tflite.FLOAT_OPS))}
    assert {("SOFTMAX", "float32"), ("RSQRT", "float32"), ("FULLY_CONNECTED", "int8")} <= kept
    assert ("SOFTMAX", "int8") not in kept and ("FULLY_CONNECTED", "float32") not in kept


def test_int8_is_written_with_the_op_types_it_kept_in_float(text_export):
    """int8 is judged before it is written (its re-run is in the tests above): export prints its
    accuracy drop, and the manifest lists the op types it kept in float32 (all or none of FLOAT_OPS)."""
    folder, printed = text_export
    assert "model_int8.tflite" in printed and "drop (points)" in printed
    entry = json.loads((folder / "manifest.json").read_text())["artifacts"]["model_int8.tflite"]
    assert entry["float_ops"] in ([], list(tflite.FLOAT_OPS)) and "FastBertNormalize" in entry["custom_ops"]

"""Export, predict and serve beyond single-text classifiers: a sentence-pair classifier and a
sentence-pair regression head, each trained by the CLI on pairs this file writes, exported, re-run
from disk and compared with the Keras model, then predicted and served."""

import json
import shutil

import grpc
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import InterpreterWithCustomOps
from conftest import garden
from tensorflow_serving.apis import prediction_service_pb2_grpc, regression_pb2
from tensorflow_text import tflite_registrar
from test_serve import call, free_port, serving

from garden.export.serving import serving_for
from garden.run import Run

WORDS = "wheat corn oil gold rates trade ship port bank loan market price steel coal rice sugar".split()
TINY_PAIR_BERT = [
    "task.init_checkpoint=''",
    "task.model.tokenizer.vocabulary=all_minilm_l6_v2",
    "task.model.tokenizer.sequence_length=24",
    "task.model.backbone.params.num_layers=1",
    "task.model.backbone.params.num_heads=2",
    "task.model.backbone.params.hidden_dim=32",
    "task.model.backbone.params.intermediate_dim=64",
    "trainer.train_steps=60",
    "trainer.steps_per_loop=20",
    "trainer.checkpoint_interval=60",
    "trainer.validation_interval=60",
    "runtime.deterministic=true",
]


def write_pairs(path, count, seed):
    """A TSV of sentence pairs: the second sentence is a shuffle of the first (label same, score 5)
    or other words (label different, score 5 x the share of its words found in the first)."""
    rng = np.random.default_rng(seed)
    lines = ["sentence1\tsentence2\tlabel\tscore"]
    for _ in range(count):
        first = list(rng.choice(WORDS, size=rng.integers(3, 6), replace=False))
        same = rng.random() < 0.5
        second = list(rng.permutation(first)) if same else list(rng.choice(WORDS, size=len(first), replace=False))
        score = 5.0 * np.mean([w in first for w in second])
        lines.append(f"{' '.join(first)}\t{' '.join(second)}\t{'same' if same else 'different'}\t{score:.2f}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pair_runs(tmp_path_factory):
    """{kind: (run folder, export folder, held-out TSV)} for a pair classifier and a pair regression."""
    folder = tmp_path_factory.mktemp("pairs")
    train, held_out = write_pairs(folder / "train.tsv", 1024, 0), write_pairs(folder / "dev.tsv", 200, 1)
    data = [f"task.train_data.input_path={train}", f"task.validation_data.input_path={held_out}"]
    pair = "task.train_data.text_pair_column=sentence2"
    runs = {
        "classifier": (
            "sst2_bert_small",
            pair,
            "task.validation_data.text_pair_column=sentence2",
            "task.train_data.text_column=sentence1",
            "task.validation_data.text_column=sentence1",
            "task.model.head={type: pair_classification, params: {num_classes: 2, inner_dim: 32, dropout: 0.0}}",
            "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.003",
        ),
        "regression": (
            "stsb_minilm",
            "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.003",
        ),
    }
    found = {}
    for kind, (experiment, *overrides) in runs.items():
        run_dir, export_dir = folder / kind, folder / f"{kind}_export"
        sets = [a for s in (*TINY_PAIR_BERT, *data, *overrides) for a in ("--set", s)]
        garden("train", experiment, *sets, "--run-dir", run_dir)
        garden("export", run_dir, "--format", "saved_model", "--format", "tflite", "--out", export_dir)
        found[kind] = run_dir, export_dir, held_out
    return found


def held_out_pairs(path):
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], np.array([float(r[3]) for r in rows])


def keras_outputs(run_dir, first, second):
    """The Keras model's serving outputs, computed here from the run folder and its task."""
    run = Run(str(run_dir))
    inputs = run.task.preprocess({"text": tf.constant(first), "text_pair": tf.constant(second)})
    return serving_for(run.task).serving_outputs(run.model(inputs, training=False))


def tflite_outputs(path, first, second):
    interpreter = InterpreterWithCustomOps(
        custom_op_registerers=tflite_registrar.SELECT_TFTEXT_OPS, model_path=str(path)
    )
    runner = interpreter.get_signature_runner("serving_default")
    return runner(text=np.array(first, dtype=object), text_pair=np.array(second, dtype=object))


@pytest.mark.parametrize("kind", ["classifier", "regression"])
def test_pair_exports_rerun_from_disk_match_the_keras_model(pair_runs, kind):
    run_dir, export_dir, held_out = pair_runs[kind]
    first, second, labels, scores = held_out_pairs(held_out)
    keras = keras_outputs(run_dir, first, second)
    saved = tf.saved_model.load(str(export_dir / "saved_model")).signatures["serving_default"]
    assert set(saved.structured_input_signature[1]) == {"text", "text_pair"}
    artifact = {"saved_model": saved(text=tf.constant(first), text_pair=tf.constant(second))}
    artifact["tflite"] = tflite_outputs(export_dir / "model_none.tflite", first, second)
    other = saved(text=tf.constant(first), text_pair=tf.constant(second[::-1]))
    key = "probabilities" if kind == "classifier" else "score"
    assert not np.array_equal(other[key], artifact["saved_model"][key])  # the second text reaches the model
    manifest = json.loads((export_dir / "manifest.json").read_text())
    if kind == "classifier":
        label_names = manifest["labels"]
        truth = np.array([label_names.index(x) for x in labels])
        keras_accuracy = np.mean(keras["class_id"].numpy() == truth)
        assert manifest["quality"] == "accuracy" and manifest["keras_accuracy"] == pytest.approx(keras_accuracy)
        for outputs in artifact.values():
            np.testing.assert_allclose(outputs["probabilities"], keras["probabilities"], atol=1e-4)
            np.testing.assert_array_equal(outputs["class_id"], keras["class_id"])
    else:
        keras_r = np.corrcoef(keras["score"].numpy(), scores)[0, 1]
        assert manifest["quality"] == "pearson" and manifest["keras_pearson"] == pytest.approx(keras_r, abs=1e-6)
        for name, outputs in artifact.items():
            np.testing.assert_allclose(outputs["score"], keras["score"], atol=1e-4)
            recorded = manifest["artifacts"]["saved_model" if name == "saved_model" else "model_none.tflite"]
            assert recorded["pearson"] == pytest.approx(np.corrcoef(outputs["score"], scores)[0, 1], abs=1e-5)


def test_predict_reads_pairs_from_jsonl_and_tsv(pair_runs, tmp_path):
    run_dir, export_dir, held_out = pair_runs["regression"]
    first, second, _, _ = held_out_pairs(held_out)
    keras = keras_outputs(run_dir, first[:4], second[:4])["score"].numpy()
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": a, "text_pair": b}) + "\n" for a, b in zip(first[:4], second[:4])))
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("text\ttext_pair\n" + "".join(f"{a}\t{b}\n" for a, b in zip(first[:4], second[:4])))
    for artifact in ("saved_model", "model_none.tflite"):
        for path in (jsonl, tsv):
            rows = [json.loads(line) for line in garden("predict", export_dir / artifact, path).stdout.splitlines()]
            np.testing.assert_allclose([row["score"] for row in rows], keras, atol=1e-4)
    lines = tmp_path / "one_per_line.txt"
    lines.write_text("wheat corn\n")
    result = garden("predict", export_dir / "saved_model", lines, check=False)
    assert result.returncode == 2 and result.stderr.strip() == (
        "garden: error: the model takes 2 inputs (text, text_pair); pass a .jsonl file (one object per line with "
        "those keys) or a .tsv/.csv file with a header naming them"
    )


def test_pair_models_serve_through_the_rest_api(pair_runs):
    saved = {kind: pair_runs[kind][1] / "saved_model" for kind in pair_runs}
    grpc_port = free_port()
    with serving(*[f"{k}={p}" for k, p in saved.items()], "--grpc-port", str(grpc_port)) as url:
        first, second, _, _ = held_out_pairs(pair_runs["regression"][2])
        instances = [{"text": a, "text_pair": b} for a, b in zip(first[:5], second[:5])]
        for kind, path in saved.items():
            status, reply = call(url, f"/v1/models/{kind}:predict", {"instances": instances})
            assert status == 200, reply
            expected = tf.saved_model.load(str(path)).signatures["serving_default"](
                text=tf.constant(first[:5]), text_pair=tf.constant(second[:5])
            )
            if kind == "classifier":
                served = [p["probabilities"] for p in reply["predictions"]]
                np.testing.assert_allclose(served, expected["probabilities"].numpy(), atol=1e-5)
            else:  # a signature with one output answers with the values alone, as TF Serving does
                np.testing.assert_allclose(reply["predictions"], expected["score"].numpy(), atol=1e-5)
        status, reply = call(url, "/v1/models/regression:predict", {"instances": [{"text": "wheat"}]})
        assert status == 400 and "text_pair" in reply["error"]
        scores = tf.saved_model.load(str(saved["regression"])).signatures["serving_default"](
            text=tf.constant(first[:5]), text_pair=tf.constant(second[:5])
        )["score"]
        status, reply = call(url, "/v1/models/regression:regress", {"examples": instances})  # tf.train.Examples
        assert status == 200 and np.allclose(reply["result"], scores.numpy(), atol=1e-5), reply
        request = regression_pb2.RegressionRequest()
        request.model_spec.name = "regression"
        for a, b in zip(first[:5], second[:5]):
            features = request.input.example_list.examples.add().features.feature
            features["text"].bytes_list.value.append(a.encode())
            features["text_pair"].bytes_list.value.append(b.encode())
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{grpc_port}"))
        regressions = stub.Regress(request, timeout=60).result.regressions
        np.testing.assert_allclose([r.value for r in regressions], scores.numpy(), atol=1e-5)


def test_an_export_whose_held_out_data_is_gone_is_one_line_and_leaves_no_folder(pair_runs, tmp_path):
    run_dir, _, held_out = pair_runs["regression"]
    moved = tmp_path / "run"
    shutil.copytree(run_dir, moved, ignore=shutil.ignore_patterns("checkpoints"))
    config = moved / "config.yaml"
    config.write_text(config.read_text().replace(str(held_out), str(tmp_path / "gone.tsv")))
    result = garden("export", moved, "--out", tmp_path / "out", check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "gone.tsv" in result.stderr and not (tmp_path / "out").exists()

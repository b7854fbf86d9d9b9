"""The text tasks beyond classification: their readers, and labels aligned to word pieces in tf.data."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import garden

from garden.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig, component
from garden.data.pipeline import eval_dataset
from garden.data.task_files import answer_words, read_conll
from garden.errors import GardenError
from garden.export.tflite import tflite_runner
from garden.registry import DATASETS, TASKS
from garden.resolve import experiment_config
from garden.train.evaluate import evaluate
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer

CONLL = """-DOCSTART- -X- O O

EU NNP B-ORG
rejects VBZ O
German JJ B-MISC
call NN O

Peter NNP B-PER
Blackburn NNP I-PER
"""


def task_of(type_, head, sequence_length=16, backbone="bert", **head_params):
    config = TaskConfig(
        type=type_,
        model=ModelConfig(
            backbone=component("backbone", backbone, num_layers=1, hidden_dim=32, intermediate_dim=64),
            head=component("head", head, **head_params),
            tokenizer=TokenizerConfig(vocabulary="all_minilm_l6_v2", sequence_length=sequence_length),
        ),
    )
    return TASKS.get(type_)(config)


def prepared(task, features, labels):
    return tf.function(task.prepare)({k: tf.constant(v) for k, v in features.items()}, tf.constant(labels))


def test_conll_reader_and_tag_alignment_to_first_word_pieces(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL)
    assert read_conll(str(path)) == (
        [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]],
        [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]],
    )
    examples = DATASETS.get("conll")(DataConfig(dataset="conll", input_path=str(path)))
    assert examples.label_names == ["B-MISC", "B-ORG", "B-PER", "I-PER", "O"]
    task = task_of("token_tagging", "token_tagging", num_classes=5)
    inputs, labels = prepared(task, examples.features, examples.labels)
    tokens = [task.tokenizer.id_to_token(int(i)) for i in inputs["token_ids"][1].numpy()]
    assert tokens[:5] == ["[CLS]", "peter", "blackburn", "[SEP]", "[PAD]"]
    assert labels[1].numpy().tolist()[:4] == [-1, 2, 3, -1]
    pieces = [task.tokenizer.id_to_token(int(i)) for i in inputs["token_ids"][0].numpy()]
    scored = [(piece, examples.label_names[tag]) for piece, tag in zip(pieces, labels[0].numpy()) if tag >= 0]
    assert scored == [("eu", "B-ORG"), ("rejects", "O"), ("german", "B-MISC"), ("call", "O")]


def test_word_pieces_after_the_first_are_not_scored():
    task = task_of("token_tagging", "token_tagging", num_classes=2)
    inputs, labels = prepared(task, {"text": ["unbelievably good"]}, [[1, 0]])
    pieces = [task.tokenizer.id_to_token(int(i)) for i in inputs["token_ids"][0].numpy() if i]
    assert len(pieces) > 4  # "unbelievably" is several pieces
    assert labels[0].numpy().tolist()[: len(pieces)] == [-1, 1] + [-1] * (len(pieces) - 4) + [0, -1]


def test_squad_answers_become_word_spans_then_token_positions(tmp_path):
    context = "The wheat  crop (of 1987) rose sharply, traders said."
    assert answer_words(context, context.index("1987"), "1987)") == (4, 4)
    assert answer_words(context, context.index("rose"), "rose sharply") == (5, 6)
    with pytest.raises(GardenError, match="not inside its context"):
        answer_words(context, 500, "x")
    squad = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": context,
                        "qas": [{"question": "What rose?", "answers": [{"text": "wheat crop", "answer_start": 4}]}],
                    }
                ]
            }
        ]
    }
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(squad))
    examples = DATASETS.get("squad")(DataConfig(dataset="squad", input_path=str(path)))
    assert examples.labels.tolist() == [[1, 2]]
    task = task_of("span_qa", "span_qa", sequence_length=24)
    inputs, spans = prepared(task, examples.features, examples.labels)
    tokens = [task.tokenizer.id_to_token(int(i)) for i in inputs["token_ids"][0].numpy()]
    start, end = spans[0].numpy()
    assert tokens[start : end + 1] == ["wheat", "crop"]
    assert inputs["segment_ids"][0].numpy()[start] == 1
    truncated = task_of("span_qa", "span_qa", sequence_length=8)
    _, spans = prepared(truncated, examples.features, np.array([[7, 8]]))  # "traders said." is cut off
    assert spans.numpy().tolist() == [[0, 0]]


def test_multiple_choice_rows_are_context_choice_pairs(tmp_path):
    path = tmp_path / "swag.jsonl"
    rows = [
        {"text": "she opened the", "choices": ["door", "sky"], "label": 0},
        {"text": "he drank the", "choices": ["chair", "water"], "label": 1},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    examples = DATASETS.get("choices_jsonl")(
        DataConfig(dataset="choices_jsonl", input_path=str(path), text_column="text")
    )
    task = task_of("multiple_choice", "multiple_choice", num_choices=2)
    inputs, labels = prepared(task, examples.features, examples.labels)
    decoded = [" ".join(task.tokenizer.id_to_token(int(i)) for i in row if i) for row in inputs["token_ids"].numpy()]
    assert decoded[1] == "[CLS] she opened the [SEP] sky [SEP]"
    assert decoded[2] == "[CLS] he drank the [SEP] chair [SEP]"
    assert task.build_model()(inputs)["logits"].shape == (2, 2)
    path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[1], "choices": ["a", "b", "c"]}))
    with pytest.raises(GardenError, match="same number of choices"):
        DATASETS.get("choices_jsonl")(DataConfig(dataset="choices_jsonl", input_path=str(path), text_column="text"))


def test_masked_lm_labels_are_the_original_tokens_at_masked_positions():
    task = task_of("masked_lm", "masked_lm", sequence_length=32, vocabulary_size=30522)
    text = ["wheat prices rose sharply in chicago as traders bought grain futures on news of drought in the plains"] * 8
    original = task.pack(task.tokenizer(tf.constant(text)))["token_ids"].numpy()
    inputs, labels = prepared(task, {"text": text}, np.zeros(8, np.int64))
    labels, masked = labels.numpy(), inputs["token_ids"].numpy()
    chosen = labels >= 0
    assert 0.08 < chosen[original > 102].mean() < 0.25  # about 15% of the word tokens
    np.testing.assert_array_equal(labels[chosen], original[chosen])
    np.testing.assert_array_equal(masked[~chosen], original[~chosen])
    assert not chosen[original <= 102].any()  # never [PAD], [CLS], [SEP]
    assert (masked[chosen] == task.tokenizer.token_to_id("[MASK]")).mean() > 0.6


def test_readers_of_tfrecord_and_scored_files(tmp_path):
    path = tmp_path / "train.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for text, label in [("good film", 1), ("dull plot", 0), ("great cast", 1)]:
            feature = {
                "sentence": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    examples = DATASETS.get("text_file")(DataConfig(dataset="text_file", input_path=str(path)))
    assert examples.features["text"].tolist() == ["good film", "dull plot", "great cast"]
    assert [examples.label_names[i] for i in examples.labels] == ["1", "0", "1"]
    with pytest.raises(GardenError, match="no feature 'labels'; did you mean 'label'"):
        DATASETS.get("text_file")(DataConfig(dataset="text_file", input_path=str(path), label_column="labels"))
    scores = tmp_path / "sts.tsv"
    scores.write_text("sentence1\tsentence2\tscore\na cat\ta kitten\t4.5\na cat\ta car\t0.5\n")
    config = DataConfig(
        dataset="scored_text_file",
        input_path=str(scores),
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="score",
    )
    examples = DATASETS.get("scored_text_file")(config)
    assert examples.labels.tolist() == [4.5, 0.5]
    assert examples.features["text_pair"].tolist() == ["a kitten", "a car"]
    config.label_column = "sentence2"
    with pytest.raises(GardenError, match="column 'sentence2' must hold numbers"):
        DATASETS.get("scored_text_file")(config)


def test_distil_bert_is_a_second_registered_text_backbone():
    task = task_of("text_classification", "classification", backbone="distil_bert", num_classes=2)
    inputs = tf.function(task.preprocess)({"text": tf.constant(["wheat prices rose"])})
    assert sorted(inputs) == ["padding_mask", "token_ids"]  # DistilBERT has no segment embeddings
    assert task.build_model()(inputs)["logits"].shape == (1, 2)


def test_tagging_learns_which_words_are_capitalised(tmp_path):
    """A real tagging run: each word always has the same tag (its case, which the uncased tokenizer
    drops), so reaching high accuracy needs every tag at its word's first piece."""
    words = "Wheat prices rose in Chicago as Traders bought grain on news of Drought in Kansas".split()
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(300):
        for word in rng.choice(words, size=rng.integers(3, 9)):
            lines.append(f"{word} {'CAP' if word[0].isupper() else 'LOW'}")
        lines.append("")
    path = tmp_path / "tags.conll"
    path.write_text("\n".join(lines))
    sets = [f"task.train_data.input_path={path}", f"task.validation_data.input_path={path}"]
    config = experiment_config(
        "conll_bert_small",
        sets=sets
        + [
            "task.model.backbone.params.num_layers=1",
            "task.model.backbone.params.hidden_dim=32",
            "task.model.backbone.params.intermediate_dim=64",
            "task.model.head.params.num_classes=2",
            "task.model.tokenizer.sequence_length=16",
            "trainer.train_steps=60",
            "trainer.steps_per_loop=20",
            "trainer.validation_interval=60",
            "trainer.checkpoint_interval=60",
            "task.validation_data.num_examples=100",
            "trainer.optimizer_config.warmup.linear.warmup_steps=6",
            "trainer.optimizer_config.learning_rate.polynomial.decay_steps=60",
            "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.002",
        ],
    )
    trainer = Trainer(config, str(tmp_path / "run"), resolve_strategy(config.runtime))
    results = trainer.train()
    assert results["accuracy"] >= 0.95
    examples = trainer.task.load(config.task.validation_data, trainer.task.load(config.task.train_data).label_names)
    assert evaluate(trainer.task, trainer.model, examples, 50)["accuracy"] == pytest.approx(results["accuracy"])
    export_dir = tmp_path / "export"
    garden("export", tmp_path / "run", "--format", "saved_model", "--format", "tflite", "--out", export_dir)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    assert manifest["quality"] == "tag_accuracy" and manifest["keras_tag_accuracy"] == pytest.approx(
        results["accuracy"]
    )
    batch = next(iter(eval_dataset(examples, 100, trainer.task.prepare)))
    inputs, aligned = {n: t.numpy() for n, t in batch[0].items()}, batch[1].numpy()
    keras = trainer.model(inputs, training=False)["logits"].numpy()
    saved = tf.saved_model.load(str(export_dir / "saved_model")).signatures["serving_default"](**inputs)
    lite = tflite_runner(path=str(export_dir / "model_none.tflite"))(**inputs)
    scored = aligned != -1
    for outputs in (saved, lite):  # re-run from disk: the Keras model's tags at every scored piece
        np.testing.assert_array_equal(np.asarray(outputs["tag_ids"])[scored], keras.argmax(-1)[scored])
        np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(keras).numpy(), atol=1e-4)


def test_masked_lm_on_reuters_text_learns_below_the_uniform_loss(tmp_path):
    config = experiment_config(
        "r8_mlm_small",
        sets=[
            "task.model.backbone.params.num_layers=1",
            "task.model.backbone.params.hidden_dim=64",
            "task.model.backbone.params.intermediate_dim=128",
            "task.model.tokenizer.sequence_length=32",
            "task.train_data.global_batch_size=16",
            "task.validation_data.num_examples=64",
            "trainer.train_steps=60",
            "trainer.validation_interval=60",
            "trainer.checkpoint_interval=60",
            "trainer.optimizer_config.warmup.linear.warmup_steps=6",
            "trainer.optimizer_config.learning_rate.polynomial.decay_steps=60",
            "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=3e-3",
        ],
    )
    results = Trainer(config, str(tmp_path / "run"), resolve_strategy(config.runtime)).train()
    assert results["loss"] < np.log(30522) - 1.0  # a uniform guess over the vocabulary costs 10.33
    assert results["perplexity"] == pytest.approx(np.exp(results["loss"]))


def test_csv_jsonl_and_headerless_files_read_the_same_examples(tmp_path):
    """One small set of pairs as CSV with a header (a quoted comma inside), as headerless CSV read by
    column number, and as JSON lines: each gives the same texts, pairs and labels."""
    rows = [("wheat, corn and rice", "grain prices", "same"), ("oil rose", "ships left port", "different")]
    with_header = tmp_path / "pairs.csv"
    with open(with_header, "w", newline="") as f:
        csv.writer(f).writerows([("first", "second", "label"), *rows])
    headerless = tmp_path / "plain.csv"
    with open(headerless, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps(dict(zip(("first", "second", "label"), r))) + "\n" for r in rows))
    named = dict(text_column="first", text_pair_column="second", label_column="label")
    configs = [
        DataConfig(dataset="text_file", input_path=str(with_header), **named),
        DataConfig(
            dataset="text_file",
            input_path=str(headerless),
            header=False,
            text_column="0",
            text_pair_column="1",
            label_column="2",
        ),
        DataConfig(dataset="text_file", input_path=str(jsonl), **named),
    ]
    for config in configs:
        examples = DATASETS.get("text_file")(config)
        assert examples.features["text"].tolist() == [r[0] for r in rows], config.input_path
        assert examples.features["text_pair"].tolist() == [r[1] for r in rows], config.input_path
        assert [examples.label_names[i] for i in examples.labels] == [r[2] for r in rows], config.input_path
    config = DataConfig(dataset="text_file", input_path=str(headerless), header=False, label_column="2")
    with pytest.raises(GardenError, match="has no header, so columns are numbers; got 'sentence'"):
        DATASETS.get("text_file")(config)

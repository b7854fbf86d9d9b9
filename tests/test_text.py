"""Text: tokenizer resolver, HF checkpoint import, file and catalog readers, a real text training run."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_TEXT, garden

from garden.config import DataConfig, TokenizerConfig
from garden.data import text_datasets
from garden.data.checkpoints import checkpoint_dir
from garden.data.streams import raw_examples
from garden.data.text_files import read_table
from garden.data.tokenizers import build_tokenizer, tokenizer_type
from garden.errors import GardenError
from garden.models import hf_import
from garden.models.backbones.bert import BertEncoder
from garden.registry import TASKS
from garden.resolve import experiment_config


def test_resolver_picks_wordpiece_for_bert_and_refuses_misfits():
    assert tokenizer_type("bert") == "wordpiece"
    with pytest.raises(GardenError, match="tokenizer 'bpe' does not fit backbone 'bert', which reads wordpiece ids"):
        tokenizer_type("bert", "bpe")
    with pytest.raises(GardenError, match="backbone 'resnet' reads no text"):
        tokenizer_type("resnet")
    with pytest.raises(GardenError, match="no vocabulary: set task.model.tokenizer.vocabulary"):
        build_tokenizer("bert", TokenizerConfig())


def test_a_vocabulary_larger_than_the_backbones_embedding_is_refused_before_training(tmp_path):
    """r8_student's BERT embeds 30522 ids (MiniLM's vocabulary); at 1000 rows most of its ids would
    index past the table, so the run is refused in one line and writes nothing."""
    sets = ["--set", "task.model.backbone.params.vocabulary_size=1000", "--run-dir", tmp_path / "run"]
    result = garden("train", "r8_student", *sets, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "the tokenizer gives 30522 ids and the backbone embeds 1000; set" in result.stderr
    assert not (tmp_path / "run").exists()


def test_minilm_import_reproduces_the_published_sentence_similarity():
    """all-MiniLM-L6-v2 mean-pooled embeddings: cosine 0.755 for this pair, as the published model."""
    folder = checkpoint_dir("all_minilm_l6_v2")
    encoder = BertEncoder(**hf_import.encoder_params(folder), pooling="mean", dropout=0.0)
    hf_import.load_into(encoder, folder)
    config = experiment_config("r8_minilm")
    task = TASKS.get("text_classification")(config.task)
    inputs = task.preprocess({"text": tf.constant(["A man is eating food.", "A man is eating a piece of bread."])})
    a, b = encoder(inputs)["pooled_output"].numpy()
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) == pytest.approx(0.755, abs=0.005)
    with pytest.raises(GardenError, match="set task.model.backbone.params.hidden_dim=384"):
        hf_import.load_into(BertEncoder(num_layers=6, num_heads=12, hidden_dim=96, intermediate_dim=1536), folder)


def test_sentence_pairs_get_segment_ids():
    config = experiment_config("sst2_bert_small")
    task = TASKS.get("text_classification")(config.task)
    packed = task.preprocess({"text": tf.constant(["good movie"]), "text_pair": tf.constant(["bad plot"])})
    ids, segments = packed["token_ids"].numpy()[0], packed["segment_ids"].numpy()[0]
    words = [task.tokenizer.id_to_token(int(i)) for i in ids[:7]]
    assert words == ["[CLS]", "good", "movie", "[SEP]", "bad", "plot", "[SEP]"]
    assert segments[:7].tolist() == [0, 0, 0, 0, 1, 1, 1] and packed["padding_mask"].numpy()[0, :8].tolist() == [
        1
    ] * 7 + [0]


def test_glue_tsv_reader_keeps_quotes_and_commas_as_text(tmp_path):
    """GLUE TSVs are not CSV: a stray quote or a comma is part of the sentence (SST-2 has both)."""
    rows = [('it \'s a "charming" film', "1"), ('" a mess , really', "0"), ("one , two , three", "1")]
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    texts, pairs, labels = read_table(str(path), "sentence", "label")
    assert list(texts) == [text for text, _ in rows] and pairs is None and list(labels) == ["1", "0", "1"]
    with pytest.raises(GardenError, match="has no column 'sentense'; did you mean 'sentence'"):
        read_table(str(path), "sentense", "label")


def test_table_readers_sort_whole_number_labels_read_a_byte_order_mark_and_keep_tsv_fields_whole(tmp_path):
    """The faults: labels 0..11 took ids in string order ('10' before '2'); Excel's byte order mark made
    the first column '\\ufeffsentence'; a quoted tab inside a TSV field split it into a label. Checked
    in memory and streamed, against Python's csv module on the same bytes."""
    rows = [(f"text {i}, with a comma", str(i % 12)) for i in range(36)]
    for kind, delimiter in ((".tsv", "\t"), (".csv", ",")):
        path = tmp_path / f"data{kind}"
        with open(path, "w", encoding="utf-8-sig", newline="") as f:  # utf-8-sig: with a byte order mark
            csv.writer(
                f, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if kind == ".csv" else csv.QUOTE_NONE, escapechar="\\"
            ).writerows([("sentence", "label"), *rows])
        with open(path, encoding="utf-8-sig", newline="") as f:
            expected = list(csv.reader(f, delimiter=delimiter))[1:]
        for limit in (1 << 30, 0):  # in memory, streamed
            data = text_datasets.text_file(DataConfig(dataset="text_file", input_path=str(path), in_memory_limit=limit))
            assert data.label_names == [str(i) for i in range(12)], (kind, limit)
            if limit:
                texts, labels = list(data.features["text"]), list(data.labels)
            else:
                read = list(raw_examples(data))
                texts, labels = [f["text"].decode() for f, _ in read], [label for _, label in read]
            assert texts == [text for text, _ in expected] and labels == [int(label) for _, label in expected]

    quoted = tmp_path / "quoted.tsv"
    quoted.write_text('sentence\tlabel\nfine\t1\n"and a tab\tinside"\t2\n')
    with pytest.raises(
        GardenError, match=r"quoted.tsv row 3 has 3 fields, the header 2; a TSV field cannot hold a tab"
    ):
        read_table(str(quoted), "sentence", "label")


def test_reuters_r8_splits_and_labels():
    load = lambda split: text_datasets._corpus("reuters_r8")(DataConfig(split=split))  # noqa: E731
    train, validation, test = load("train"), load("validation"), load("test")
    assert (len(train), len(validation), len(test)) == (4937, 548, 2189)
    assert train.label_names == ["acq", "crude", "earn", "grain", "interest", "money-fx", "ship", "trade"]
    assert set(train.features["text"][:3]).isdisjoint(validation.features["text"])


def test_small_bert_learns_r8_from_scratch(text_run):
    """A 2-layer BERT on 1024 R8 documents for 120 steps beats the majority class on held-out documents."""
    results = json.loads(garden("eval", text_run, "--split", "validation").stdout)
    config = experiment_config("r8_minilm", sets=TINY_TEXT)
    validation = text_datasets._corpus("reuters_r8")(config.task.validation_data).take(results["examples"])
    majority = np.bincount(validation.labels).max() / len(validation)
    assert results["step"] == 120 and results["accuracy"] > majority + 0.1, (results, majority)

"""Static distillation (model2vec): PCA and SIF by hand, MiniLM distilled for real, a classifier on
the distilled table trained on R8 and exported to TFLite with raw strings."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import sklearn.decomposition
import tensorflow as tf
from conftest import ROOT, garden
from test_text_families import _hf_model as hf_model
from test_text_families import _write_checkpoint as write_checkpoint

from garden.config import TokenizerConfig
from garden.data.checkpoints import checkpoint_dir
from garden.data.tokenizers import build_tokenizer
from garden.distill.static import StaticEncoder, pca, sif_weights
from garden.errors import GardenError
from garden.export.tflite import interpreter
from garden.metrics import retrieval_metrics
from garden.models.backbones.static import StaticEmbedding, load_table, save_table
from garden.registry import TASKS
from garden.resolve import experiment_config
from garden.run import Run

PARAPHRASES = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("The stock market fell sharply today.", "Shares dropped steeply on the exchange."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch."),
]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    out = tmp_path_factory.mktemp("static") / "minilm"
    garden("distill", "static", "--teacher", "minilm", "--pca-dims", "64", "--out", out)
    return out


def test_pca_keeps_a_plane_exactly_and_orders_its_axes():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 2)) @ np.array([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0]]) + 3.0  # a plane in 3-D
    projected, explained = pca(points, 2)
    assert explained == pytest.approx(1.0)
    distances = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(distances(projected), distances(points), atol=1e-9)
    assert projected[:, 0].var() >= projected[:, 1].var()
    assert pca(points, 1)[1] < 1.0
    with pytest.raises(GardenError, match="--pca-dims 4"):
        pca(points, 4)


def test_sif_weights_follow_zipf_by_hand():
    # ranks 1..3 have Zipf mass 1/2, 1/3, 1/4 -> p = 6/13, 4/13, 3/13; weight = a / (a + p) with a = 1/2
    np.testing.assert_allclose(sif_weights(3, 0.5), [13 / 25, 13 / 21, 13 / 19])
    with pytest.raises(GardenError, match="between 0 and 1"):
        sif_weights(3, 1.5)


def test_distill_writes_the_table_the_teacher_vocabulary_and_a_summary(distilled):
    summary = json.loads((distilled / "static.json").read_text())
    assert summary["teacher"] == "minilm" and summary["pca_dims"] == 64 and 0.3 < summary["explained_variance"] < 1
    assert np.load(distilled / "embeddings.npy").shape == (30522, 64)
    teacher_vocabulary = checkpoint_dir("all_minilm_l6_v2") + "/vocab.txt"
    assert (distilled / "vocab.txt").read_text() == open(teacher_vocabulary, encoding="utf-8").read()


def test_encode_puts_paraphrases_closer_than_unrelated_sentences(distilled):
    vectors = StaticEncoder(str(distilled)).encode([s for pair in PARAPHRASES for s in pair])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    cosine = vectors @ vectors.T
    for i in range(len(PARAPHRASES)):
        paraphrase = cosine[2 * i, 2 * i + 1]
        unrelated = [cosine[2 * i, 2 * j + k] for j in range(len(PARAPHRASES)) if j != i for k in (0, 1)]
        assert paraphrase > max(unrelated), PARAPHRASES[i]


def test_static_backbone_pools_the_distilled_rows_and_rebuilds_from_config(distilled):
    backbone = StaticEmbedding(distilled_path=str(distilled))
    table = np.load(distilled / "embeddings.npy")
    token_ids = np.array([[101, 2054, 2003, 102, 0, 0]], dtype=np.int32)
    padding_mask = (token_ids != 0).astype(np.int32)
    pooled = backbone({"token_ids": token_ids, "padding_mask": padding_mask})["pooled_output"]
    np.testing.assert_allclose(pooled[0], table[[101, 2054, 2003, 102]].mean(axis=0), rtol=1e-5, atol=1e-7)
    rebuilt = StaticEmbedding.from_config(backbone.get_config())
    assert rebuilt.get_config() == backbone.get_config() and rebuilt.hidden_dim == 64
    with pytest.raises(GardenError, match="no embeddings.npy in /no/such"):
        StaticEmbedding(distilled_path="/no/such")


def test_classifier_on_static_embeddings_learns_r8_and_exports_raw_strings_to_tflite(distilled, tmp_path):
    """Trained from a distilled table, the run folder keeps its own copy: eval and export work after
    the distilled folder is gone."""
    run_dir, table = tmp_path / "r8_static", tmp_path / "table"
    shutil.copytree(distilled, table)
    sets = [
        f"task.model.backbone.params.distilled_path={table}",
        "task.train_data.num_examples=2048",
        "task.test_data.num_examples=500",
        "task.model.tokenizer.sequence_length=128",
        "trainer.train_steps=300",
        "trainer.steps_per_loop=100",
        "trainer.checkpoint_interval=300",
        "trainer.validation_interval=300",
        "trainer.optimizer_config.learning_rate.polynomial.decay_steps=300",
        "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.01",
        "trainer.optimizer_config.warmup.linear.warmup_steps=30",
    ]
    garden("train", "r8_static", *[a for s in sets for a in ("--set", s)], "--run-dir", run_dir)
    shutil.rmtree(table)
    result = json.loads(garden("eval", run_dir, "--split", "test").stdout.splitlines()[-1])
    assert result["examples"] == 500 and result["accuracy"] > 0.88  # 93% validation in 300 steps
    garden("export", run_dir, "--format", "tflite", "--quantize", "int8")
    entry = json.loads((run_dir / "export" / "manifest.json").read_text())["artifacts"]["model_int8.tflite"]
    assert entry["accuracy_drop"] <= 1.0 and "FastWordpieceTokenizeWithOffsets" in entry["custom_ops"]
    assert entry["size_bytes"] < 0.3 * 30522 * 64 * 4 + 2e6  # int8 table plus the tokenizer's vocabulary


def test_encode_benchmark_runs_in_quick_mode(distilled):
    result = subprocess.run(
        [sys.executable, "benchmarks/static_encode.py", "--static", str(distilled), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=True,
    )
    ratio = re.search(r"ratio static / teacher:\s+([\d.]+)x", result.stdout)
    assert ratio and float(ratio.group(1)) > 0, result.stdout


def test_static_embeddings_tune_r8_retrieval_and_export_what_static_encoder_computes(distilled, tmp_path):
    """The untuned `text_embedding` model on the distilled table is StaticEncoder (model2vec's mean of
    the word pieces' rows, no [CLS]/[SEP]); tuned on R8 classes its same-class MAP rises above
    StaticEncoder's on the same validation texts, and its TFLite file takes raw strings."""
    sets = [
        f"task.model.backbone.params.distilled_path={distilled}",
        "task.train_data.num_examples=2048",
        "task.validation_data.num_examples=300",
        "task.test_data.num_examples=200",
        "trainer.train_steps=120",
        "trainer.steps_per_loop=60",
        "trainer.checkpoint_interval=120",
        "trainer.validation_interval=120",
        "trainer.optimizer_config.learning_rate.polynomial.decay_steps=120",
        "trainer.optimizer_config.warmup.linear.warmup_steps=12",
    ]
    config = experiment_config("r8_static_embedding", sets=sets)
    task = TASKS.get(config.task.type)(config.task)
    validation = task.load(config.task.validation_data)
    texts = list(validation.features["text"])
    short = [" ".join(text.split()[:40]) for text in texts[:20]]  # inside sequence_length: nothing cut
    packed = tf.function(lambda texts: task.prepare({"text": texts}, None)[0])(tf.constant(short))  # as tf.data does
    vectors = task.build_model()(packed)["embedding"].numpy()
    encoder = StaticEncoder(str(distilled))
    np.testing.assert_allclose(vectors, encoder.encode(short), atol=1e-6)
    before = retrieval_metrics(validation.labels, encoder.encode(texts))["map"]

    run_dir = tmp_path / "static_embedding"
    garden("train", "r8_static_embedding", *[a for s in sets for a in ("--set", s)], "--run-dir", run_dir)
    after = [json.loads(line) for line in open(run_dir / "metrics.jsonl") if '"validation"' in line][-1]["map"]
    assert after > before + 0.02, (before, after)
    garden("export", run_dir, "--format", "tflite", "--quantize", "dynamic")
    runner = interpreter(path=str(run_dir / "export" / "model_dynamic.tflite")).get_signature_runner("serving_default")
    on_device = np.concatenate([runner(text=np.array([t.encode()], dtype=object))["embedding"] for t in short])
    tuned = Run(str(run_dir)).model(packed)["embedding"].numpy()
    np.testing.assert_allclose(on_device, tuned, atol=0.02)  # the table in int8
    assert np.mean(np.sum(on_device * tuned, axis=1)) > 0.999


@pytest.mark.parametrize("family, pooling", [("bert", "mean"), ("electra", "first"), ("distil_bert", "last")])
def test_a_wordpiece_teacher_of_any_family_distills_added_words_and_an_int8_table_as_transformers_computes(
    family, pooling, tmp_path
):
    """model2vec's recipe by hand on transformers' own model of a tiny random checkpoint: each
    vocabulary token as [SEP] token [CLS], each added corpus word as [CLS] pieces [SEP] (its pieces
    pooled), PCA and SIF weights; the table then stored in int8 with a scale per row."""
    folder = tmp_path / family
    folder.mkdir()
    write_checkpoint(family, folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Oil cartels cartels, freight-rates RATES. Bakery bakery café\n")  # 'bakery' twice, 'cafe' once
    out = tmp_path / "static"
    flags = ["--pca-dims", "8", "--pooling", pooling, "--vocabulary", corpus, "--dtype", "int8"]
    summary = json.loads(garden("distill", "static", "--teacher", folder, *flags, "--out", out).stdout.splitlines()[-1])
    tokens = (folder / "vocab.txt").read_text().splitlines()
    assert (out / "vocab.txt").read_text().splitlines() == tokens + ["cartels", "bakery"]  # most frequent first
    assert summary["added_words"] == 2 and summary["dtype"] == "int8"
    assert np.load(out / "embeddings.npy").dtype == np.int8

    model = hf_model(family, folder)
    sep, cls = tokens.index("[SEP]"), tokens.index("[CLS]")
    tokenizer = build_tokenizer("static", TokenizerConfig(vocabulary=str(folder / "vocab.txt")))
    words = [np.array([cls, *np.asarray(tokenizer(tf.constant([word]))[0]), sep]) for word in ("cartels", "bakery")]
    expected = []
    for index, row in enumerate([np.array([sep, i, cls]) for i in range(len(tokens))] + words):
        output = model(input_ids=row[None], attention_mask=np.ones_like(row)[None]).last_hidden_state.numpy()[0]
        inner = output if index < len(tokens) else output[1:-1]  # an added word: its pieces alone
        expected.append({"mean": inner.mean(axis=0), "first": output[0], "last": output[-1]}[pooling])
    reduced = sklearn.decomposition.PCA(8).fit_transform(np.array(expected, np.float64))
    reduced *= sif_weights(len(expected), 1e-4)[:, None]
    table = load_table(str(out))
    signs = np.sign(np.sum(reduced * table, axis=0))  # PCA's axes are defined up to their sign
    scale = np.abs(reduced).max(axis=1, keepdims=True) / 127  # int8 rounds each row to its scale
    assert np.all(np.abs(table * signs - reduced) <= 0.5 * scale + 1e-5)
    added = StaticEncoder(str(out)).tokenizer(tf.constant(["a bakery", "bakery's"]))  # the whole word, one token
    assert [np.asarray(ids).tolist()[-1 if i == 0 else 0] for i, ids in enumerate(added)] == [len(tokens) + 1] * 2


SPECIAL_IDS = {  # (start, end) as the test's tokenizer writers place them (tests/test_text_families.py)
    "albert": (2, 3),  # SentencePiece [CLS] 2, [SEP] 3
    "deberta_v3": (1, 2),  # [CLS] 1, [SEP] 2
    "xlm_roberta": (0, 2),  # fairseq's <s> 0, </s> 2, the SentencePiece ids shifted by one
    "roberta": (0, 2),  # vocab.json's <s> 0, </s> 2
}
HF_TOKENIZERS = {  # transformers' own tokenizer of each family, from the files its folder holds
    "albert": ("AlbertTokenizer", "spiece.model"),
    "deberta_v3": ("DebertaV2Tokenizer", "spm.model"),
    "xlm_roberta": ("XLMRobertaTokenizer", "sentencepiece.bpe.model"),
    "roberta": ("RobertaTokenizer", "vocab.json", "merges.txt"),
}
TEXTS = ["Oil prices rose sharply.", "The bank cut its rates", "shares fell in Zürich."]


@pytest.mark.parametrize(
    "family, pooling", [("xlm_roberta", "mean"), ("albert", "first"), ("deberta_v3", "last"), ("roberta", "mean")]
)
def test_a_sentencepiece_or_byte_bpe_teacher_distills_a_table_that_its_own_tokenizer_reads(family, pooling, tmp_path):
    """model2vec's recipe on transformers' model of each SentencePiece / byte-level BPE family: every
    id as end token start, pooled, PCA and SIF; the folder keeps the teacher's tokenizer files, so
    StaticEncoder and a static task read a text as transformers' tokenizer of the teacher does."""
    import transformers

    folder = tmp_path / family
    folder.mkdir()
    write_checkpoint(family, folder)
    out = tmp_path / "static"
    flags = ["--pca-dims", "8", "--pooling", pooling, "--dtype", "float16"]
    summary = json.loads(garden("distill", "static", "--teacher", folder, *flags, "--out", out).stdout.splitlines()[-1])
    assert summary["family"] == family

    model = hf_model(family, folder)
    start, end = SPECIAL_IDS[family]
    ids = np.arange(summary["vocabulary_size"])
    rows = np.stack([np.full_like(ids, end), ids, np.full_like(ids, start)], axis=1)
    positions = {}  # RoBERTa's positions count from pad + 1, and transformers would read the pad token's row as padding
    if family in ("roberta", "xlm_roberta"):
        positions["position_ids"] = np.broadcast_to(model.config.pad_token_id + 1 + np.arange(3), rows.shape)
    output = model(input_ids=rows, attention_mask=np.ones_like(rows), **positions).last_hidden_state.numpy()
    expected = {"mean": output.mean(axis=1), "first": output[:, 0], "last": output[:, -1]}[pooling]
    assert summary["vocabulary_size"] == model.config.vocab_size
    reduced = sklearn.decomposition.PCA(8).fit_transform(expected.astype(np.float64))
    reduced *= sif_weights(len(expected), 1e-4)[:, None]
    table = load_table(str(out))
    signs = np.sign(np.sum(reduced * table, axis=0))
    assert np.all(np.abs(table * signs - reduced) <= 2.0**-11 * np.abs(reduced).max(axis=1, keepdims=True) + 1e-5)

    reference_class, *files = HF_TOKENIZERS[family]
    reference = getattr(transformers, reference_class)(*[str(folder / name) for name in files])
    pieces = [reference(text, add_special_tokens=False)["input_ids"] for text in TEXTS]
    encoder = StaticEncoder(str(out))
    assert [np.asarray(row).tolist() for row in encoder.tokenizer(tf.constant(TEXTS))] == pieces
    config = experiment_config("r8_static_embedding", sets=[f"task.model.backbone.params.distilled_path={out}"])
    task = TASKS.get(config.task.type)(config.task)
    packed = tf.function(lambda texts: task.prepare({"text": texts}, None)[0])(tf.constant(TEXTS))  # as tf.data does
    assert packed["padding_mask"].numpy().sum(axis=1).tolist() == [len(p) for p in pieces]  # the family's pad id
    np.testing.assert_allclose(task.build_model()(packed)["embedding"], encoder.encode(TEXTS), atol=1e-6)


def test_a_static_table_reads_only_the_vocabulary_it_was_distilled_from(distilled, tmp_path):
    """A table with added words indexes them past the teacher's ids: a tokenizer without them (the
    teacher's own vocabulary set by hand) would never reach those rows, so it is refused."""
    with_words = tmp_path / "with_words"
    shutil.copytree(distilled, with_words)
    table = np.load(with_words / "embeddings.npy")
    np.save(with_words / "embeddings.npy", np.concatenate([table, table[:2]]))
    (with_words / "vocab.txt").write_text((distilled / "vocab.txt").read_text() + "zzgardenword\nqqgardenword\n")
    path = f"task.model.backbone.params.distilled_path={with_words}"
    config = experiment_config("r8_static", sets=[path])
    task = TASKS.get(config.task.type)(config.task)
    assert [np.asarray(r).tolist() for r in task.tokenizer(tf.constant(["zzgardenword"]))] == [
        [len(table)]
    ]  # the folder's own vocabulary
    teacher = experiment_config("r8_static", sets=[path, "task.model.tokenizer.vocabulary=all_minilm_l6_v2"])
    with pytest.raises(GardenError, match=r"gives 30522 ids and the static table in .* has 30524 rows.*leave task"):
        TASKS.get(config.task.type)(teacher.task)


def test_distill_static_refuses_in_one_line_before_it_loads_a_teacher(tmp_path):
    folder, decoder, corpus = tmp_path / "albert", tmp_path / "gpt2", tmp_path / "corpus.txt"
    folder.mkdir()
    write_checkpoint("albert", folder)
    decoder.mkdir()
    (decoder / "config.json").write_text('{"model_type": "gpt2"}')
    (decoder / "model.safetensors").write_bytes(b"")
    corpus.write_text("words words\n")
    for flags, message in [
        (["--teacher", folder, "--vocabulary", corpus], "--vocabulary adds words to a WordPiece .* albert model"),
        (["--teacher", decoder], "is a gpt2 decoder; distill a text encoder: albert, bert,"),
        (["--vocabulary", tmp_path / "missing.txt"], "--vocabulary .*missing.txt is not a file"),
        (["--dtype", "int4"], "--dtype int4 is not one of float32, float16, int8"),
        (["--pooling", "max"], "--pooling max is not one of mean, first, last"),
    ]:
        result = garden("distill", "static", *flags, "--out", tmp_path / "out", check=False)
        assert result.returncode == 2 and re.search(message, result.stderr), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_table_stored_in_float16_or_int8_loads_back_within_its_rounding(tmp_path):
    table = (np.random.default_rng(4).normal(size=(50, 12)) * np.arange(1, 51)[:, None]).astype(np.float32)
    for dtype, bound in [("float32", 0.0), ("float16", 2.0**-11), ("int8", 0.5 / 127)]:
        folder = tmp_path / dtype
        folder.mkdir()
        save_table(str(folder), table, dtype)
        row_scale = np.abs(table).max(axis=1, keepdims=True)  # int8: each row rounded to its own max / 127
        assert np.all(np.abs(load_table(str(folder)) - table) <= bound * row_scale + 1e-7)
        assert np.load(folder / "embeddings.npy").nbytes == table.size * np.dtype(dtype).itemsize

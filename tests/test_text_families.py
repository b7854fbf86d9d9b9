"""Text encoder families beyond BERT: RoBERTa, XLM-R, DeBERTa-v3, ELECTRA, ALBERT (and BERT,
DistilBERT) with their tokenizers. Tests write tiny random Hugging Face checkpoints and tokenizer
files themselves; Hugging Face's own TensorFlow models (transformers 4.x) read the same folders as
the reference, and KerasHub's own preprocessors as the reference for pair packing."""

import json
import os

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import garden, write_byte_bpe, write_sentencepiece
from safetensors.numpy import load_file, save_file

from garden.config import TokenizerConfig
from garden.data.tokenizers import serving_tokenizer, tokenizer_files
from garden.errors import GardenError
from garden.export import tflite
from garden.export.serving import serving_for
from garden.models import hf_import
from garden.models.freezing import backbone_blocks, freeze
from garden.registry import BACKBONES, TASKS
from garden.resolve import experiment_config
from garden.run import Run

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Oil prices rose sharply after the cartel cut output.",
    "Shares of the bank fell three percent on Tuesday.",
    "A man is eating a piece of bread in the kitchen.",
    "Grain exports to the region doubled this quarter.",
    "The central bank left interest rates unchanged.",
    "Ship owners said freight rates would stay low.",
    "Money markets were calm ahead of the trade figures.",
] * 4
PAIRS = (["Oil prices rose.", "A man eats bread in the kitchen today."], ["Shares fell.", "Rates were unchanged."])
ROBERTA_SIZES = dict(type_vocab_size=1, max_position_embeddings=66, layer_norm_eps=1e-5)  # as roberta-base's
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def _sentencepiece(folder, name, **ids):
    write_sentencepiece(folder / name, TEXTS, 80, **ids)


def _byte_bpe(folder):
    write_byte_bpe(folder, TEXTS, 400, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])


def _wordpiece(folder):
    words = sorted({w.strip(".").lower() for text in TEXTS for w in text.split()})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words]) + "\n")


def _vocabulary_size(family, folder):
    """The ids the family's KerasHub tokenizer gives for the folder's files (the checkpoint's vocab_size)."""
    config = experiment_config("r8_minilm", sets=[f"task.model.backbone.type={family}"]).task.model.tokenizer
    from garden.data.tokenizers import build_tokenizer

    return build_tokenizer(family, config.replace(vocabulary=str(folder))).vocabulary_size()


FAMILIES = {  # Garden family: (transformers config class, TF model class, config, tokenizer writer)
    "roberta": (
        "RobertaConfig",
        "TFRobertaModel",
        ROBERTA_SIZES,
        _byte_bpe,
    ),
    "xlm_roberta": (
        "XLMRobertaConfig",
        "TFXLMRobertaModel",
        ROBERTA_SIZES,
        lambda folder: _sentencepiece(folder, "sentencepiece.bpe.model", unk_id=0, bos_id=1, eos_id=2, pad_id=-1),
    ),
    "deberta_v3": (
        "DebertaV2Config",
        "TFDebertaV2Model",
        dict(
            max_position_embeddings=64,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=16,
            pos_att_type=["p2c", "c2p"],
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            position_biased_input=False,
            max_relative_positions=-1,
            layer_norm_eps=1e-7,
        ),
        lambda folder: _sentencepiece(
            folder,
            "spm.model",
            pad_id=0,
            bos_id=1,
            eos_id=2,
            unk_id=3,
            pad_piece="[PAD]",
            bos_piece="[CLS]",
            eos_piece="[SEP]",
            unk_piece="[UNK]",
        ),
    ),
    "electra": ("ElectraConfig", "TFElectraModel", dict(embedding_size=16, max_position_embeddings=64), _wordpiece),
    "albert": (
        "AlbertConfig",
        "TFAlbertModel",
        dict(embedding_size=16, max_position_embeddings=64, num_hidden_groups=1, inner_group_num=1),
        lambda folder: _sentencepiece(
            folder,
            "spiece.model",
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece="<pad>",
            bos_piece="[CLS]",
            eos_piece="[SEP]",
            user_defined_symbols="[MASK]",
        ),
    ),
    "bert": ("BertConfig", "TFBertModel", dict(max_position_embeddings=64, hidden_act="gelu_new"), _wordpiece),
    "distil_bert": (
        "DistilBertConfig",
        "TFDistilBertModel",
        dict(hidden_dim=64, max_position_embeddings=64),
        _wordpiece,
    ),
}


def _hf_model(family, folder):
    """transformers' TensorFlow model of `family` holding the folder's weights (safetensors 0.8's
    safe_open no longer iterates, so the state dict is read here and handed to transformers' loader)."""
    import transformers
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    config_class, model_class, _, _ = FAMILIES[family]
    config = getattr(transformers, config_class).from_pretrained(str(folder))
    model = getattr(transformers, model_class)(config)
    model(model.dummy_inputs)
    state = load_file(str(folder / "model.safetensors"))
    load_pytorch_state_dict_in_tf2_model(model, state, tf_inputs=False, allow_missing_keys=False)
    return model


def _write_checkpoint(family, folder):
    """A random Hugging Face checkpoint: transformers' own weight names and [out, in] Linear layout."""
    import transformers
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    config_class, model_class, extra, write_tokenizer = FAMILIES[family]
    write_tokenizer(folder)
    config = getattr(transformers, config_class)(vocab_size=_vocabulary_size(family, folder), **SIZES, **extra)
    model = getattr(transformers, model_class)(config)
    model(model.dummy_inputs)
    rng = np.random.default_rng(len(family))
    tensors = {}
    for weight in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(weight.name, tf_weight_shape=weight.shape)
        value = rng.normal(0.0, 0.3, weight.shape).astype(np.float32)
        if "LayerNorm.weight" in name:
            value = 1.0 + value
        tensors[name] = np.ascontiguousarray(value.T if transpose.name == "SIMPLE" else value)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(folder))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folders = {}
    for family in FAMILIES:
        folders[family] = tmp_path_factory.mktemp(family)
        _write_checkpoint(family, folders[family])
    return folders


def _task(family, folder, **sets):
    overrides = [f"task.model.backbone.type={family}", f"task.init_checkpoint={folder}"]
    overrides += [f"task.model.backbone.params.{k}={v}" for k, v in hf_import.encoder_params(str(folder)).items()]
    overrides += [f"{key}={value}" for key, value in sets.items()]
    config = experiment_config("r8_minilm", sets=overrides)
    return TASKS.get("text_classification")(config.task)


@pytest.mark.parametrize("family", FAMILIES)
def test_imported_checkpoint_matches_hugging_face_on_packed_pairs(family, checkpoints):
    """Garden's encoder from a Hugging Face folder gives transformers' hidden states (≤ 1e-4) on pairs
    that Garden tokenized and packed."""
    folder = checkpoints[family]
    task = _task(family, folder, **{"task.model.tokenizer.sequence_length": 40})
    inputs = task.preprocess({"text": tf.constant(PAIRS[0]), "text_pair": tf.constant(PAIRS[1])})
    encoder = hf_import.encoder(str(folder))
    ours = encoder(inputs)["sequence_output"].numpy()
    reference = _hf_model(family, folder)(
        input_ids=inputs["token_ids"],
        attention_mask=inputs["padding_mask"],
        **({"token_type_ids": inputs["segment_ids"]} if "segment_ids" in inputs else {}),
    ).last_hidden_state.numpy()
    real = inputs["padding_mask"].numpy().astype(bool)
    assert real.sum() > 20 and not real.all()  # both rows padded, so masking is exercised
    print(f"{family}: max |Δ hidden state| vs transformers {np.abs(ours[real] - reference[real]).max():.1e}")
    np.testing.assert_allclose(ours[real], reference[real], atol=1e-4)


KERAS_HUB_PREPROCESSORS = {  # the family's own pair preprocessor, on the same tokenizer
    "roberta": "RobertaTextClassifierPreprocessor",
    "xlm_roberta": "XLMRobertaTextClassifierPreprocessor",
    "deberta_v3": "DebertaV3TextClassifierPreprocessor",
    "albert": "AlbertTextClassifierPreprocessor",
}


@pytest.mark.parametrize("family", KERAS_HUB_PREPROCESSORS)
def test_pairs_pack_as_keras_hub_packs_them_in_training_and_in_serving(family, checkpoints):
    task = _task(family, checkpoints[family], **{"task.model.tokenizer.sequence_length": 12})
    preprocessor = getattr(keras_hub.models, KERAS_HUB_PREPROCESSORS[family])(
        tokenizer=task.tokenizer, sequence_length=12
    )
    first, second = tf.constant(PAIRS[0]), tf.constant(PAIRS[1])
    expected = preprocessor(x=(first, second))  # a positional 2-tuple is (x, y) to KerasHub 0.32
    serving = tf.function(lambda a, b: task.pack_in_serving(*task.serving_segments([a, b])))  # as exports trace it
    for packed in (task.preprocess({"text": first, "text_pair": second}), serving(first, second)):
        assert sorted(packed) == sorted(name for name in expected if name in task.input_names)
        for name, value in packed.items():
            np.testing.assert_array_equal(value.numpy(), expected[name].numpy(), err_msg=f"{family} {name}")


@pytest.mark.parametrize("cased", [False, True])
def test_albert_reads_text_as_transformers_albert_tokenizer_in_training_and_in_serving(cased, checkpoints, tmp_path):
    """transformers' AlbertTokenizer lowercases a text and strips its accents before SentencePiece
    reads it (its default: ALBERT's vocabularies are lowercase); a folder whose tokenizer_config.json
    says do_lower_case false keeps both. Garden's tokenizer and the one its exports carry
    (tensorflow-text's, which TFLite runs) give transformers' ids either way."""
    import transformers

    folder = tmp_path / "albert"
    folder.mkdir()
    for path in checkpoints["albert"].iterdir():
        os.symlink(path, folder / path.name)
    if cased:
        (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False, "keep_accents": True}))
    task = _task("albert", folder)
    assert task.config.model.tokenizer.lowercase is (False if cased else None)
    options = {"do_lower_case": False, "keep_accents": True} if cased else {}
    reference = transformers.AlbertTokenizer(str(folder / "spiece.model"), **options)
    texts = ["Oil PRICES rose in Zürich.", "``Café'' owners said   ÉCOLE", "oil prices rose in zurich."]
    expected = [reference(text, add_special_tokens=False)["input_ids"] for text in texts]
    assert (expected[0] == expected[2]) is not cased  # the case and the accents matter to the ids
    for tokenize in (task.tokenizer, serving_tokenizer(task.tokenizer)):
        ids = tf.function(tokenize)(tf.constant(texts))
        assert [np.asarray(row).tolist() for row in ids.to_list()] == expected


def test_roberta_separates_pairs_with_two_end_tokens(checkpoints):
    task = _task("roberta", checkpoints["roberta"], **{"task.model.tokenizer.sequence_length": 16})
    ids = task.preprocess({"text": tf.constant(["Oil"]), "text_pair": tf.constant(["Shares"])})["token_ids"]
    tokens = [task.tokenizer.id_to_token(int(i)) for i in ids.numpy()[0]]
    first = tokens.index("</s>")
    assert tokens[0] == "<s>" and tokens[first + 1] == "</s>" and tokens[first + 2] != "</s>"
    assert tokens.count("</s>") == 3 and tokens[tokens.index("<pad>") - 1] == "</s>"


def test_a_bad_checkpoint_folder_is_named_in_one_line(checkpoints, tmp_path):
    folder = checkpoints["roberta"]
    for name in ("config.json", "vocab.json", "merges.txt"):
        os.symlink(folder / name, tmp_path / name)
    with pytest.raises(GardenError, match="has a config.json and no model.safetensors"):
        hf_import.encoder(str(tmp_path))
    with pytest.raises(GardenError, match=r"sizes; set .*task.model.backbone.params.hidden_dim=32"):
        hf_import.load_into(BACKBONES.get("roberta")(vocabulary_size=400, hidden_dim=16), str(folder))
    with pytest.raises(
        GardenError, match="holds a roberta model, not deberta_v3; set task.model.backbone.type=roberta"
    ):
        hf_import.load_into(BACKBONES.get("deberta_v3")(), str(folder))
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["roberta.encoder.layer.1.output.dense.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(GardenError, match="has no tensor 'encoder.layer.1.output.dense.weight'"):
        hf_import.encoder(str(tmp_path))
    with pytest.raises(GardenError, match="merges is read by byte-level BPE tokenizers only, and backbone 'albert'"):
        _task("albert", checkpoints["albert"], **{"task.model.tokenizer.merges": str(folder / "merges.txt")})
    with pytest.raises(GardenError, match=f"no spm.model in {tmp_path}; point task.model.tokenizer.vocabulary at one"):
        tokenizer_files("deberta_v3", TokenizerConfig(), str(tmp_path))
    os.remove(tmp_path / "merges.txt")
    with pytest.raises(GardenError, match="no BPE merges at .*merges.txt; set task.model.tokenizer.merges"):
        _task("roberta", tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])  # cut short
    config = json.loads((folder / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "hidden_size"}))
    with pytest.raises(GardenError, match="config.json in .*broken lacks 'hidden_size', a key of every 'roberta'"):
        hf_import.encoder(str(broken))
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(GardenError, match="cannot read .*broken/model.safetensors: .*; put the checkpoint's weights"):
        hf_import.encoder(str(broken))


def test_a_cased_wordpiece_folder_keeps_case_and_other_tokenizers_refuse_lowercase(checkpoints, tmp_path):
    """A cased BERT's folder says do_lower_case false: the config takes it (garden show prints it) and
    the ids are transformers' cased BertTokenizer's; a folder that says nothing lowercases (uncased)."""
    import transformers

    folder = tmp_path / "cased"
    folder.mkdir()
    os.symlink(checkpoints["bert"] / "model.safetensors", folder / "model.safetensors")
    vocabulary = (checkpoints["bert"] / "vocab.txt").read_text().splitlines()
    config = json.loads((checkpoints["bert"] / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": len(vocabulary) + 2}))  # sized for the ids
    (folder / "vocab.txt").write_text("\n".join([*vocabulary, "Oil", "Shares"]) + "\n")  # cased words too
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    texts = ["Oil prices rose.", "Shares of the bank fell."]
    for path, lowercase in [(folder, False), (checkpoints["bert"], None)]:
        task = _task("bert", path)
        assert task.config.model.tokenizer.lowercase is lowercase
        reference = transformers.BertTokenizer(str(path / "vocab.txt"), do_lower_case=lowercase is not False)
        ids = tf.function(task.tokenizer)(tf.constant(texts))
        assert [np.asarray(row).tolist() for row in ids.to_list()] == [
            reference.convert_tokens_to_ids(reference.tokenize(text)) for text in texts
        ]
    assert _task("bert", folder).tokenizer(tf.constant(["Oil"]))[0][0] == len(vocabulary)  # the cased word
    with pytest.raises(
        GardenError,
        match="applies to WordPiece vocabularies and ALBERT.s SentencePiece; roberta.s byte_bpe",
    ):
        _task("roberta", checkpoints["roberta"], **{"task.model.tokenizer.lowercase": "true"})


@pytest.mark.parametrize("family", ["deberta_v3", "roberta"])
def test_a_keras_hub_preset_folder_loads_with_its_tokenizer(family, checkpoints, tmp_path):
    """A KerasHub preset (save_to_preset of the backbone and the family's tokenizer) warm-starts a task:
    the same hidden states as transformers' model of the Hugging Face folder it was made from."""
    folder = checkpoints[family]
    task = _task(family, folder, **{"task.model.tokenizer.sequence_length": 40})
    hf_import.encoder(str(folder)).encoder.save_to_preset(str(tmp_path))
    task.tokenizer.save_to_preset(str(tmp_path))
    preset_task = _task(family, tmp_path, **{"task.model.tokenizer.sequence_length": 40})
    model = preset_task.build_model()
    preset_task.initialize(model)
    inputs = preset_task.preprocess({"text": tf.constant(PAIRS[0])})
    np.testing.assert_array_equal(inputs["token_ids"], task.preprocess({"text": tf.constant(PAIRS[0])})["token_ids"])
    ours = model.get_layer("backbone")(inputs)["sequence_output"].numpy()
    reference = _hf_model(family, folder)(input_ids=inputs["token_ids"], attention_mask=inputs["padding_mask"])
    real = inputs["padding_mask"].numpy().astype(bool)
    np.testing.assert_allclose(ours[real], reference.last_hidden_state.numpy()[real], atol=1e-4)


@pytest.mark.parametrize("family", ["roberta", "xlm_roberta", "deberta_v3", "electra", "albert"])
def test_freezing_counts_each_transformer_layer_as_a_block_and_leaves_no_weight_out(family):
    sizes = dict(vocabulary_size=100, num_layers=3, num_heads=2, hidden_dim=16, intermediate_dim=32)
    sizes.update(dict(embedding_dim=8) if family in ("electra", "albert") else {})
    backbone = BACKBONES.get(family)(**sizes, **(dict(num_groups=3) if family == "albert" else {}))
    stem, blocks = backbone_blocks(backbone)
    counted = {id(w) for layer in stem + [x for block in blocks for x in block] for w in layer.weights}
    assert len(blocks) == 3 and counted == {id(w) for w in backbone.weights}
    freeze(backbone, 1, "task.model.trainable_backbone_blocks")
    last = {id(w) for layer in blocks[-1] for w in layer.trainable_weights}
    assert last and {id(w) for w in backbone.trainable_weights} == last


ODD_TEXT = ["Café naïve — “quoted” 東京 😀 tab\there", "x" * 90, "don't stop!!! $5.00 ...", ""]


@pytest.mark.parametrize("family", ["albert", "deberta_v3", "roberta"])
def test_a_fine_tuned_family_serves_raw_strings_and_tflite_where_its_tokenizer_converts(family, checkpoints, tmp_path):
    """A run warm-started from a Hugging Face folder exports a SavedModel that takes raw strings (rerun
    here against the run's Keras model). SentencePiece converts to TFLite through tensorflow-text's
    FastSentencepieceTokenizer; byte-level BPE is refused in one line offering token ids, which convert."""
    folder, run, out = checkpoints[family], tmp_path / "run", tmp_path / "export"
    params = [f"task.model.backbone.params.{k}={v}" for k, v in hf_import.encoder_params(str(folder)).items()]
    settings = [
        f"task.model.backbone.type={family}",
        f"task.init_checkpoint={folder}",
        *params,
        "task.model.tokenizer.sequence_length=32",
        "task.train_data.num_examples=64",
        "task.train_data.global_batch_size=16",
        "task.validation_data.num_examples=32",
        "task.test_data.num_examples=64",
        "trainer.train_steps=4",
        "trainer.steps_per_loop=4",
        "trainer.checkpoint_interval=4",
        "trainer.validation_interval=4",
    ]
    garden("train", "r8_minilm", *[a for s in settings for a in ("--set", s)], "--run-dir", run)
    # byte-level BPE's TFLite converts from token ids; its raw strings are refused below
    signature = "serving_tokens" if family == "roberta" else "serving_default"
    formats = ["--format", "saved_model", "--format", "tflite", "--quantize", "none"]
    garden("export", run, *formats, "--signature", signature, "--out", out)
    trained = Run(str(run))
    texts = tf.constant(ODD_TEXT + PAIRS[0] + PAIRS[1])
    tokens = trained.task.preprocess({"text": texts})
    keras = serving_for(trained.task).serving_outputs(trained.model(tokens, training=False))["probabilities"].numpy()
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"](text=texts)
    np.testing.assert_allclose(served["probabilities"].numpy(), keras, atol=1e-5)
    runner = tflite.tflite_runner(path=str(out / "model_none.tflite"), signature=signature)
    inputs = {k: v.numpy() for k, v in tokens.items()} if family == "roberta" else {"text": texts.numpy()}
    np.testing.assert_allclose(runner(**inputs)["probabilities"], keras, atol=1e-4)
    if family == "roberta":  # the export's own check, on the SavedModel it wrote
        content = tflite.convert(str(out / "saved_model"), "serving_default", "none")
        message = "op MutableHashTableV2, .* no TFLite model was written \\(export --signature serving_tokens"
        with pytest.raises(GardenError, match=message):
            with tflite.builtins_and_text_ops_only("none", "serving_default", ["serving_tokens"]):
                tflite.tflite_runner(content)(text=texts.numpy())
        return
    assert (
        "TFText>FastSentencepieceTokenize"
        in json.loads((out / "manifest.json").read_text())["artifacts"]["model_none.tflite"]["custom_ops"]
    )

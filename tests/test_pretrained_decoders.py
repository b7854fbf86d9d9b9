"""Pretrained decoders (GPT-2, Gemma, Llama) from Hugging Face folders the tests write themselves:
tiny random weights (2 layers, width 64) under transformers' own tensor names, and tokenizer files
trained on a few sentences. KerasHub's own CausalLM models read the same folders as the reference,
and for GPT-2 transformers' TFGPT2LMHeadModel too, which shares no code with KerasHub."""

import json
import shutil

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conftest import garden, saved_model_greedy, write_byte_bpe, write_sentencepiece
from safetensors.numpy import load_file, save_file

from garden.config import TokenizerConfig
from garden.data.checkpoints import checkpoint_dir
from garden.data.tokenizers import build_tokenizer
from garden.errors import GardenError
from garden.export.decoder import MAX_LENGTH, decode_length, decode_step_function
from garden.generate.chat import chat_prompt, read_chat_template
from garden.generate.generator import Generator, generate_inputs
from garden.generate.sampler import Rules, Sampling
from garden.models import hf_import
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
] * 4
PROMPTS = ["The bank", "Oil prices rose sharply after"]
NEW_TOKENS = 32
GREEDY = Sampling(temperature=0)


def _cached(generator, token_ids, padding_mask, steps, sampling, seed=0):
    """New tokens [rows, steps] of the cached loop, every row sampled by `sampling` and `seed`, no stop strings."""
    rows = int(tf.shape(token_ids)[0])
    rules = Rules.of([sampling] * rows, [seed] * rows)
    return generator.cached(token_ids, padding_mask, tf.fill([rows], steps), rules, tf.zeros([rows, 0], tf.int32))


WIDTH, LAYERS, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE = 64, 2, 4, 2, 16, 128


def _sentencepiece(folder, **pieces):
    return write_sentencepiece(folder / "tokenizer.model", TEXTS, 96, model_type="bpe", **pieces)


def _gpt2_files(folder):
    return write_byte_bpe(folder, TEXTS, 320, ["<|endoftext|>"])


def _llama_like_tensors(vocabulary, rng, lm_head, gemma=False):
    """Random tensors under Hugging Face's Llama/Gemma names, in its [out, in] Linear layout."""
    intermediate = INTERMEDIATE // 2 if gemma else INTERMEDIATE  # Gemma's config counts one of gate/up

    def normal(*shape):
        return rng.normal(0.0, 0.2, shape).astype(np.float32)

    tensors = {"model.embed_tokens.weight": normal(vocabulary, WIDTH), "model.norm.weight": 1 + normal(WIDTH)}
    for i in range(LAYERS):
        prefix = f"model.layers.{i}."
        tensors.update(
            {
                prefix + "input_layernorm.weight": 1 + normal(WIDTH),
                prefix + "post_attention_layernorm.weight": 1 + normal(WIDTH),
                prefix + "self_attn.q_proj.weight": normal(HEADS * HEAD_DIM, WIDTH),
                prefix + "self_attn.k_proj.weight": normal(KV_HEADS * HEAD_DIM, WIDTH),
                prefix + "self_attn.v_proj.weight": normal(KV_HEADS * HEAD_DIM, WIDTH),
                prefix + "self_attn.o_proj.weight": normal(WIDTH, HEADS * HEAD_DIM),
                prefix + "mlp.gate_proj.weight": normal(intermediate, WIDTH),
                prefix + "mlp.up_proj.weight": normal(intermediate, WIDTH),
                prefix + "mlp.down_proj.weight": normal(WIDTH, intermediate),
            }
        )
    if lm_head:
        tensors["lm_head.weight"] = normal(vocabulary, WIDTH)
    return tensors


# Llama 2 chat's template, as its tokenizer_config.json holds it
LLAMA_2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)


def _write_llama(folder, vocabulary=None, rope_theta=10000.0, **changes):
    """Llama 2 with its SentencePiece tokenizer.model (or, given a `vocabulary` size, no tokenizer),
    its config.json with `changes`."""
    vocabulary = vocabulary or _sentencepiece(folder, unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    config = dict(
        model_type="llama",
        architectures=["LlamaForCausalLM"],
        vocab_size=vocabulary,
        hidden_size=WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        intermediate_size=INTERMEDIATE,
        rope_theta=rope_theta,
        rms_norm_eps=1e-6,  # KerasHub's converter keeps its own default, 1e-6; Garden reads the file's
        tie_word_embeddings=False,
        max_position_embeddings=128,
    )
    config.update(changes)
    tensors = _llama_like_tensors(vocabulary, np.random.default_rng(1), lm_head=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    special = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": LLAMA_2_CHAT}
    (folder / "tokenizer_config.json").write_text(json.dumps(special))


LLAMA_3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _write_llama3(folder):
    """Llama 3: the same tensors and config as Llama 2's, and a byte-level BPE in Hugging Face's
    tokenizer.json (no tokenizer.model), trained by the `tokenizers` library."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(TEXTS, vocab_size=320, min_frequency=1, special_tokens=LLAMA_3_SPECIAL)
    tokenizer.save(str(folder / "tokenizer.json"))
    _write_llama(folder, vocabulary=tokenizer.get_vocab_size(), rope_theta=500000.0)
    special = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(special))


def _write_mistral(folder):
    """Mistral: Llama 2's tensors, tokenizer and chat template, its attention in a sliding window of
    8 tokens (so that the prompts and 32 new tokens cross it)."""
    _write_llama(folder, model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=8)


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _write_qwen(folder, version):
    """Qwen 2.5 (biases on the query, key and value projections, an untied lm_head) or Qwen 3 (tied, an
    RMSNorm on each head's queries and keys, an explicit head_dim): Llama's tensors, and a byte-level
    BPE in tokenizer.json whose special tokens are added tokens."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(TEXTS, vocab_size=320, min_frequency=1)
    tokenizer.add_special_tokens(QWEN_SPECIAL)
    tokenizer.save(str(folder / "tokenizer.json"))
    rng = np.random.default_rng(4 if version == 3 else 5)
    tensors = _llama_like_tensors(tokenizer.get_vocab_size(), rng, lm_head=version == 2)
    for i in range(LAYERS):
        attention = f"model.layers.{i}.self_attn."
        if version == 3:
            for norm in ("q_norm", "k_norm"):
                tensors[f"{attention}{norm}.weight"] = 1 + rng.normal(0.0, 0.2, HEAD_DIM).astype(np.float32)
        else:
            for name, heads in (("q", HEADS), ("k", KV_HEADS), ("v", KV_HEADS)):
                tensors[f"{attention}{name}_proj.bias"] = rng.normal(0.0, 0.2, heads * HEAD_DIM).astype(np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    config = dict(
        model_type=f"qwen{version}",
        architectures=[f"Qwen{version}ForCausalLM"],
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        **({"head_dim": HEAD_DIM} if version == 3 else {}),
        intermediate_size=INTERMEDIATE,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=version == 3,
        use_sliding_window=False,
        sliding_window=None if version == 3 else 32768,
        max_position_embeddings=128,
    )
    (folder / "config.json").write_text(json.dumps(config))


def _write_gemma(folder, version=1):
    """Gemma 1, or Gemma 2 (logit soft caps, four norms a layer, every other layer's attention in a
    sliding window: of 8 tokens here, so that the prompts and 32 new tokens cross it), or Gemma 3's
    text decoder (Gemma 2's, with query and key norms and local and global rotary scales)."""
    vocabulary = _sentencepiece(
        folder,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
    )
    config = dict(
        model_type="gemma",
        architectures=["GemmaForCausalLM"],
        vocab_size=vocabulary,
        hidden_size=WIDTH,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        intermediate_size=INTERMEDIATE // 2,
        rms_norm_eps=1e-6,
        max_position_embeddings=128,
    )
    rng = np.random.default_rng(2)
    tensors = _llama_like_tensors(vocabulary, rng, lm_head=False, gemma=version < 3)
    if version == 3:  # Gemma 3's intermediate_size counts all of gate/up; its query and key have RMSNorms
        config.update(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], intermediate_size=INTERMEDIATE)
        for i in range(LAYERS):
            for norm in ("q_norm", "k_norm"):
                tensors[f"model.layers.{i}.self_attn.{norm}.weight"] = rng.normal(0.0, 0.2, HEAD_DIM).astype(np.float32)
    if version >= 2:
        config.update(
            query_pre_attn_scalar=HEAD_DIM,
            attn_logit_softcapping=50.0,
            final_logit_softcapping=30.0,
            sliding_window=8,
        )
        if version == 2:
            config.update(model_type="gemma2", architectures=["Gemma2ForCausalLM"])
        for i in range(LAYERS):
            for norm in ("pre_feedforward_layernorm", "post_feedforward_layernorm"):
                tensors[f"model.layers.{i}.{norm}.weight"] = (1 + rng.normal(0.0, 0.2, WIDTH)).astype(np.float32)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))


def _write_gpt2(folder):
    """GPT-2 through transformers' own TF model, its weights saved under the PyTorch names."""
    import transformers
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    config = transformers.GPT2Config(
        vocab_size=_gpt2_files(folder),
        n_positions=128,
        n_embd=WIDTH,
        n_layer=LAYERS,
        n_head=HEADS,
        architectures=["GPT2LMHeadModel"],
    )
    model = transformers.TFGPT2LMHeadModel(config)
    model(model.dummy_inputs)
    rng, tensors = np.random.default_rng(3), {}
    for weight in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(weight.name, tf_weight_shape=weight.shape)
        value = rng.normal(0.0, 0.2, weight.shape).astype(np.float32)
        value = 1.0 + value if ".ln_" in name and name.endswith("weight") else value
        value = value.reshape(-1) if name.endswith("bias") else value  # TF's Conv1D biases are [1, out]
        value = value.T if transpose.name == "SIMPLE" else value
        tensors[name.removeprefix("transformer.")] = np.ascontiguousarray(value)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(folder))


WRITERS = {
    "gpt2": _write_gpt2,
    "gemma": _write_gemma,
    "gemma2": lambda folder: _write_gemma(folder, version=2),
    "gemma3": lambda folder: _write_gemma(folder, version=3),
    "llama": _write_llama,
    "llama3": _write_llama3,
    "mistral": _write_mistral,
    "qwen2": lambda folder: _write_qwen(folder, version=2),
    "qwen3": lambda folder: _write_qwen(folder, version=3),
}
HUB_TASKS = {
    "gpt2": "GPT2CausalLM",
    "gemma": "GemmaCausalLM",
    "gemma2": "GemmaCausalLM",
    "gemma3": "Gemma3CausalLM",
    "llama": "LlamaCausalLM",
    "llama3": "Llama3CausalLM",
    "mistral": "MistralCausalLM",
    "qwen2": "QwenCausalLM",
    "qwen3": "Qwen3CausalLM",
}
BACKBONE_TYPES = {"gemma2": "gemma", "llama3": "llama"}  # Garden's backbones read both versions' folders


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    found = {}
    for family, write in WRITERS.items():
        found[family] = tmp_path_factory.mktemp(family)
        write(found[family])
    return found


def test_a_corpus_is_tokenized_as_hugging_faces_tokenizer_does_text_by_text(folders):
    """The windows of a GPT-2 folder's run are Hugging Face's `tokenizers` ids of Shakespeare's
    held-out plays, end to end, in order (Garden tokenizes them in parallel)."""
    from tokenizers import ByteLevelBPETokenizer

    config = experiment_config("shakespeare_gpt2", sets=[f"task.init_checkpoint={folders['gpt2']}"])
    task = TASKS.get("causal_lm")(config.task)
    reference = ByteLevelBPETokenizer(str(folders["gpt2"] / "vocab.json"), str(folders["gpt2"] / "merges.txt"))
    texts = task.texts(config.task.validation_data)
    expected = np.concatenate([reference.encode(str(text)).ids for text in texts])
    windows = task.load(config.task.validation_data).features["token_ids"]
    length = task.sequence_length
    assert len(texts) > 1 and windows.shape == ((len(expected) - 1) // length, length + 1)
    np.testing.assert_array_equal(windows[:, :-1].reshape(-1), expected[: len(windows) * length])
    np.testing.assert_array_equal(windows[:, -1], expected[length : (len(windows) + 1) * length : length])


def _garden(family, folder):
    """Garden's backbone and tokenizer of the folder, as a causal_lm run builds them."""
    backbone_type = BACKBONE_TYPES.get(family, family)
    sets = [f"task.model.backbone.type={backbone_type}", f"task.init_checkpoint={folder}"]
    resolved = experiment_config("shakespeare_gpt2", sets=sets).task.model.tokenizer  # Llama 3's: byte_bpe
    return hf_import.encoder(str(folder)), build_tokenizer(backbone_type, resolved, str(folder))


def _ported_by_hand(backbone, tensors):
    """Llama-layout tensors (Hugging Face's [out, in] Linear kernels) into KerasHub's Llama-like `backbone`."""

    def kernel(name, variable):
        variable.assign(tensors[name].T.reshape(variable.shape))

    backbone.token_embedding.embeddings.assign(tensors["model.embed_tokens.weight"])
    backbone.token_embedding.reverse_embeddings.assign(tensors["lm_head.weight"].T)
    for i, layer in enumerate(backbone.transformer_layers):
        prefix, attention = f"model.layers.{i}.", layer._self_attention_layer
        layer._self_attention_layernorm.scale.assign(tensors[prefix + "input_layernorm.weight"])
        layer._feedforward_layernorm.scale.assign(tensors[prefix + "post_attention_layernorm.weight"])
        for dense, name in zip(
            (attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense),
            ("q_proj", "k_proj", "v_proj", "o_proj"),
        ):
            kernel(f"{prefix}self_attn.{name}.weight", dense.kernel)
        for dense, name in zip(
            (layer._feedforward_gate_dense, layer._feedforward_intermediate_dense, layer._feedforward_output_dense),
            ("gate_proj", "up_proj", "down_proj"),
        ):
            kernel(f"{prefix}mlp.{name}.weight", dense.kernel)
    backbone.layer_norm.scale.assign(tensors["model.norm.weight"])
    return backbone


def _hub_backbone(backbone_class, family, folder):
    """KerasHub's backbone of the folder. Its Qwen 2 converter names QwenBackbone's
    `use_sliding_window_attention` as the config does (`use_sliding_window`), so `from_preset` fails:
    the backbone is built with the name fixed and loaded by KerasHub's own weight converter. Its
    Mistral converter rounds every weight to float16: the float32 tensors are ported here by hand."""
    if family == "mistral":
        from keras_hub.src.utils.transformers import convert_mistral

        params = convert_mistral.convert_backbone_config(json.loads((folder / "config.json").read_text()))
        return _ported_by_hand(backbone_class(**params), load_file(str(folder / "model.safetensors")))
    if family != "qwen2":
        return backbone_class.from_preset(str(folder))
    from keras_hub.src.utils.transformers import convert_qwen
    from keras_hub.src.utils.transformers.safetensor_utils import SafetensorLoader

    config = json.loads((folder / "config.json").read_text())
    params = convert_qwen.convert_backbone_config(config)
    params["use_sliding_window_attention"] = params.pop("use_sliding_window")
    backbone = backbone_class(**params)
    with SafetensorLoader(str(folder)) as loader:
        convert_qwen.convert_weights(backbone, loader, config)
    return backbone


def _hub_lm(family, folder):
    """KerasHub's CausalLM of the folder, ids in and ids out, greedy (KerasHub's Llama converter reads
    Llama 3's tokenizer.json, and these folders hold Llama 2's tokenizer.model)."""
    task = getattr(keras_hub.models, HUB_TASKS[family])
    lm = task(backbone=_hub_backbone(task.backbone_cls, family, folder), preprocessor=None)
    lm.compile(sampler="greedy")
    return lm


@pytest.mark.parametrize("family", WRITERS)
def test_imported_decoder_matches_keras_hub_logits_and_greedy_tokens(family, folders):
    backbone, tokenizer = _garden(family, folders[family])
    hub_lm = _hub_lm(family, folders[family])
    hub_tokenizer = getattr(keras_hub.models, HUB_TASKS[family]).preprocessor_cls.tokenizer_cls
    if family == "gpt2":
        hub_tokenizer = hub_tokenizer(str(folders[family] / "vocab.json"), str(folders[family] / "merges.txt"))
    elif family in ("llama3", "gemma3", "qwen2", "qwen3"):  # converters read tokenizer.json, or see no image pieces
        hub_tokenizer = hub_tokenizer.from_preset(str(folders[family]))
    else:
        hub_tokenizer = hub_tokenizer(proto=str(folders[family] / "tokenizer.model"))
    generator = Generator(backbone, tokenizer)
    for prompt in PROMPTS:
        ids = generator.prompt_ids(prompt)
        start = [] if hub_tokenizer.start_token_id is None else [hub_tokenizer.start_token_id]  # Qwen 3 has none
        assert ids == [*start, *np.asarray(hub_tokenizer(prompt)).tolist()]
        inputs = {"token_ids": np.array([ids], np.int32), "padding_mask": np.ones((1, len(ids)), np.int32)}
        ours, theirs = backbone(inputs)["token_logits"].numpy(), hub_lm(inputs).numpy()
        print(f"{family} {prompt!r}: max |Δ logits| vs KerasHub {np.abs(ours - theirs).max():.1e}")
        np.testing.assert_allclose(ours, theirs, atol=1e-4)

    padded = {key: np.pad(value, [[0, 0], [0, NEW_TOKENS]]) for key, value in inputs.items()}
    if family == "gemma3":  # its generate() cannot gather the empty image outputs of a text-only batch
        hub_tokens = np.asarray(hub_lm.generate_step(padded, stop_token_ids=None)["token_ids"])[0, len(ids) :]
    else:
        hub_tokens = hub_lm.generate(padded, stop_token_ids=None)["token_ids"][0, len(ids) :]  # no stop, as Garden's
    garden_tokens = _cached(generator, *generator.left_padded(tf.constant([prompt])), NEW_TOKENS, GREEDY)
    np.testing.assert_array_equal(garden_tokens.numpy()[0], hub_tokens)


def test_mistral_keeps_its_float32_weights_and_matches_transformers_own_model(folders):
    """Garden's Mistral holds the folder's weights bit for bit (KerasHub 0.32's Mistral converter
    rounds them to float16), and gives transformers' TFMistralForCausalLM's logits on a text inside
    its window (transformers' TF Mistral has no sliding window; KerasHub's, above, checks it)."""
    import transformers
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    folder = folders["mistral"]
    tensors = load_file(str(folder / "model.safetensors"))
    backbone, tokenizer = _garden("mistral", folder)
    hub = backbone.hub
    np.testing.assert_array_equal(hub.token_embedding.embeddings.numpy(), tensors["model.embed_tokens.weight"])
    down = hub.transformer_layers[1]._feedforward_output_dense.kernel.numpy()
    np.testing.assert_array_equal(down, tensors["model.layers.1.mlp.down_proj.weight"].T)
    reference = transformers.TFMistralForCausalLM(transformers.MistralConfig.from_pretrained(str(folder)))
    reference(reference.dummy_inputs)
    load_pytorch_state_dict_in_tf2_model(reference, tensors, tf_inputs=False, allow_missing_keys=True)
    ids = Generator(backbone, tokenizer).prompt_ids(PROMPTS[1])[:8]
    inputs = {"token_ids": np.array([ids], np.int32), "padding_mask": np.ones((1, len(ids)), np.int32)}
    ours = backbone(inputs)["token_logits"].numpy()
    theirs = reference(inputs["token_ids"], attention_mask=inputs["padding_mask"]).logits.numpy()
    assert len(ids) == 8
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_a_mistral_folder_with_a_missing_or_truncated_tensor_file_is_one_line_and_leaves_no_run(folders, tmp_path):
    for fault, message in (
        ("missing", "File does not contain tensor lm_head.weight"),
        ("truncated", "deserializing header"),
    ):
        folder = tmp_path / fault
        shutil.copytree(folders["mistral"], folder)
        weights = folder / "model.safetensors"
        if fault == "missing":
            tensors = load_file(str(weights))
            del tensors["lm_head.weight"]
            save_file(tensors, str(weights))
        else:
            weights.write_bytes(weights.read_bytes()[:1000])
        sets = ["task.model.backbone.type=mistral", f"task.init_checkpoint={folder}", "trainer.train_steps=1"]
        run = tmp_path / f"run_{fault}"
        result = garden(
            "train", "shakespeare_gpt2", *[a for s in sets for a in ("--set", s)], "--run-dir", run, check=False
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
        assert f"KerasHub cannot convert the checkpoint in {folder}: " in result.stderr and message in result.stderr
        assert not run.exists()


def test_gpt2_matches_transformers_own_model(folders):
    import transformers
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    folder = folders["gpt2"]
    config = transformers.GPT2Config.from_pretrained(str(folder))
    reference = transformers.TFGPT2LMHeadModel(config)
    reference(reference.dummy_inputs)
    state = {f"transformer.{k}": v for k, v in load_file(str(folder / "model.safetensors")).items()}
    load_pytorch_state_dict_in_tf2_model(reference, state, tf_inputs=False, allow_missing_keys=True)
    backbone, tokenizer = _garden("gpt2", folder)
    generator = Generator(backbone, tokenizer)
    token_ids, padding_mask = generator.left_padded(tf.constant(PROMPTS))  # two lengths: the first is left-padded
    ours = backbone({"token_ids": token_ids, "padding_mask": padding_mask})["token_logits"].numpy()
    positions = np.maximum(np.cumsum(padding_mask, axis=1) - 1, 0)  # as transformers' generate sets them
    theirs = reference(token_ids, attention_mask=padding_mask, position_ids=positions).logits.numpy()
    held = padding_mask.numpy().astype(bool)
    print(f"gpt2, a left-padded batch: max |Δ logits| vs transformers {np.abs(ours[held] - theirs[held]).max():.1e}")
    np.testing.assert_allclose(ours[held], theirs[held], atol=1e-4)


def test_gpt2_generates_within_its_positions_and_refuses_past_them(folders):
    """The fault: a 128-position GPT-2 generated past its last position (the cached path clamped the
    index and answered; the uncached one ended in a traceback)."""
    generator = Generator(*_garden("gpt2", folders["gpt2"]))
    prompt = PROMPTS[0]
    room = 128 - len(generator.prompt_ids(prompt))
    assert len(generator.generate([prompt], room, GREEDY)) == 1  # the last position is usable
    refusal = f"the prompt's {128 - room} tokens and --max-new-tokens {room + 1} exceed the 128 positions"
    for options in ({}, {"cache": False}, {"beams": 2}):
        with pytest.raises(GardenError, match=refusal):
            generator.generate([prompt], room + 1, GREEDY, **options)
    with pytest.raises(GardenError, match=refusal):
        generator.stream(prompt, room + 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="tokens and its max_new_tokens exceed the 128 positions"):
        generator.generate_text(**generate_inputs([prompt], room + 1, GREEDY))  # the SavedModel's signature


def test_gpt2_exports_a_decode_step_within_its_positions_and_a_hugging_face_folder_with_lora_merged(folders, tmp_path):
    """The fault: `garden export` wrote a 256-token decode step for a 128-position GPT-2. The default
    cache now holds the model's positions; a --max-length past them is refused before any work.
    `--format hf` of the run (two steps of rank-4 LoRA, alpha 64, at 0.01) gives a folder whose weights hold
    the adapters merged and that transformers' own GPT-2 reads into the run's logits and tokens."""
    run = tmp_path / "run"
    overrides = [
        "task.model.backbone.type=gpt2",
        f"task.init_checkpoint={folders['gpt2']}",
        "task.model.lora.rank=4",
        "task.model.lora.alpha=64",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=0.01",  # adapters far from zero
        "trainer.optimizer_config.warmup.type=null",
        "task.model.tokenizer.sequence_length=32",
        "task.train_data.num_examples=32",
        "task.validation_data.num_examples=16",
        "trainer.train_steps=2",
        "trainer.steps_per_loop=1",
        "trainer.validation_interval=2",
        "trainer.checkpoint_interval=2",
    ]
    garden("train", "shakespeare_gpt2", *[a for s in overrides for a in ("--set", s)], "--run-dir", run)
    positions = json.loads((folders["gpt2"] / "config.json").read_text())["n_positions"]
    refused = garden("export", run, "--max-length", str(positions + 1), check=False)
    assert refused.returncode == 2 and not (run / "export").exists()
    assert f"--max-length {positions + 1} is past the {positions} positions this model has embeddings for; " in (
        refused.stderr
    )
    backbone = Run(str(run)).model.get_layer("backbone")
    assert decode_length(backbone, None) == positions < MAX_LENGTH  # the default: not the 256 of a rotary model
    cache = decode_step_function(backbone, decode_length(backbone, None)).input_signature[2]
    assert cache.shape[3] == positions  # [layers, rows, 2, length, heads, head_dim]

    import transformers
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    garden("export", run, "--format", "hf", "--out", tmp_path / "export")
    folder = tmp_path / "export" / "hf"
    exported, published = (
        load_file(str(folder / "model.safetensors")),
        load_file(str(folders["gpt2"] / "model.safetensors")),
    )
    name = "h.0.attn.c_attn.weight"
    assert np.abs(exported.get(name, exported.get(f"transformer.{name}")) - published[name]).max() > 1e-3  # merged
    reference = transformers.TFGPT2LMHeadModel(transformers.GPT2Config.from_pretrained(str(folder)))
    reference(reference.dummy_inputs)
    state = {k if k.startswith("transformer.") else f"transformer.{k}": v for k, v in exported.items()}
    load_pytorch_state_dict_in_tf2_model(reference, state, tf_inputs=False, allow_missing_keys=True)
    tokens = transformers.GPT2Tokenizer.from_pretrained(str(folder))("oil prices rose")["input_ids"]
    assert tokens == np.asarray(Run(str(run)).task.tokenizer("oil prices rose")).tolist()
    token_ids = np.array([tokens * 3], np.int32)
    ours = backbone({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)})["token_logits"].numpy()
    np.testing.assert_allclose(reference(token_ids).logits.numpy(), ours, atol=1e-4)
    assert json.loads((tmp_path / "export" / "manifest.json").read_text())["artifacts"]["hf"]["max_abs_error"] <= 1e-4


@pytest.mark.parametrize("family", WRITERS)
def test_a_left_padded_batch_continues_each_prompt_as_it_would_alone(family, folders):
    backbone, tokenizer = _garden(family, folders[family])
    generator = Generator(backbone, tokenizer)
    sampled = Sampling(temperature=0.9, top_k=20)
    token_ids, padding_mask = generator.left_padded(tf.constant(PROMPTS))
    assert not padding_mask.numpy().all()  # the shorter prompt is padded
    together = _cached(generator, token_ids, padding_mask, 12, GREEDY).numpy()
    alone = _cached(generator, *generator.left_padded(tf.constant(PROMPTS[:1])), 12, GREEDY).numpy()
    np.testing.assert_array_equal(together[0], alone[0])
    cached = _cached(generator, token_ids, padding_mask, 12, sampled, seed=5)
    rules = Rules.of([sampled] * len(PROMPTS), [5] * len(PROMPTS))
    recomputed = generator.recompute(token_ids, padding_mask, 12, rules, tf.zeros([len(PROMPTS), 0], tf.int32))
    np.testing.assert_array_equal(cached.numpy(), recomputed.numpy())


@pytest.mark.parametrize("family", WRITERS)
def test_a_continuation_ends_at_the_familys_end_token(family, folders):
    backbone, tokenizer = _garden(family, folders[family])
    generator = Generator(backbone, tokenizer)
    stop_ids = generator.stop_ids(tf.zeros([1, 0], tf.string))
    ends = [tokenizer.end_token_id, *([tokenizer.end_token2_id] if family == "llama3" else [])]  # and <|eot_id|>
    assert stop_ids.numpy().tolist() == [ends]
    text = np.asarray(tokenizer("oil prices")).tolist()
    for end in ends:
        new = tf.constant([text + [end] + text], tf.int32)  # tokens after the end token are cut
        assert generator.texts(new, stop_ids).numpy()[0].decode() == tokenizer.detokenize(text)


def test_a_folders_chat_template_renders_as_transformers_renders_it(folders):
    import transformers

    folder = folders["llama"]
    reference = transformers.LlamaTokenizer.from_pretrained(str(folder))
    template = read_chat_template(str(folder / "tokenizer_config.json"))
    conversation = [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Where did oil prices go?"},
        {"role": "assistant", "content": " Up, sharply. "},
        {"role": "user", "content": "And grain?"},
    ]
    for messages in (conversation, conversation[1:2]):
        expected = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert chat_prompt(template, messages, "<s>", "</s>") == expected
    with pytest.raises(GardenError, match="the chat template refuses the messages: Conversation roles must alternate"):
        chat_prompt(template, conversation[1:2] * 2, "<s>", "</s>")
    given = f"task.model.tokenizer.chat_template={folder / 'tokenizer_config.json'}"
    refused = garden("train", "r8_minilm", "--set", given, "--run-dir", folder.parent / "encoder_run", check=False)
    assert refused.returncode == 2 and "leave it empty for a text_classification task" in refused.stderr
    assert not (folder.parent / "encoder_run").exists()


def test_a_bad_decoder_folder_is_named_in_one_line(folders, tmp_path):
    source = folders["llama"]
    for name in ("config.json", "tokenizer_config.json"):
        (tmp_path / name).write_text((source / name).read_text())
    tensors = load_file(str(source / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(GardenError, match=r"KerasHub cannot convert the checkpoint in .*up_proj"):
        hf_import.encoder(str(tmp_path))
    with pytest.raises(GardenError, match=r"no tokenizer.model in .*; point task.model.tokenizer.vocabulary at one"):
        build_tokenizer("llama", TokenizerConfig(), str(tmp_path))  # the folder has no tokenizer file
    wrong = BACKBONES.get("llama")(**{**hf_import.encoder_params(str(source)), "hidden_dim": 32})
    with pytest.raises(GardenError, match="set task.model.backbone.params.hidden_dim=64"):
        hf_import.load_into(wrong, checkpoint_dir(str(source)))
    embedding = tmp_path / "embeddinggemma"  # Gemma 3's embedding variant: not a decoder Garden runs
    embedding.mkdir()
    config = {**json.loads((folders["gemma3"] / "config.json").read_text()), "use_bidirectional_attention": True}
    (embedding / "config.json").write_text(json.dumps(config))
    (embedding / "model.safetensors").symlink_to(folders["gemma3"] / "model.safetensors")
    with pytest.raises(GardenError, match="Garden runs Gemma 3's text decoder .* an image-text or embedding model"):
        hf_import.encoder_params(str(embedding))
    sizes = ["task.model.backbone.type=llama", f"task.init_checkpoint={source}"]  # sized by its config.json
    config = experiment_config("shakespeare_gpt2", sets=sizes)
    assert {k: config.task.model.backbone.params.as_dict()[k] for k in ("hidden_dim", "num_layers")} == {
        "hidden_dim": WIDTH,
        "num_layers": LAYERS,
    }
    given = experiment_config("shakespeare_gpt2", sets=[*sizes, "task.model.backbone.params.hidden_dim=32"])
    assert given.task.model.backbone.params.hidden_dim == 32  # a size set by hand stays, and loading refuses it


def test_a_pretrained_llama_fine_tunes_generates_and_exports_like_keras(folders, tmp_path):
    """`garden train` from the folder (its weights and its tokenizer), then `garden generate` and
    `garden export`; the SavedModel's `generate`, re-run from disk, gives `garden generate`'s text."""
    folder, run = folders["llama"], tmp_path / "run"
    overrides = [  # the backbone's sizes come from the folder's config.json
        "task.model.backbone.type=llama",
        f"task.init_checkpoint={folder}",
        "task.model.tokenizer.sequence_length=32",
        "task.train_data.num_examples=160",
        "task.validation_data.num_examples=16",
        "trainer.train_steps=20",
        "trainer.steps_per_loop=10",
        "trainer.validation_interval=20",
        "trainer.checkpoint_interval=20",
        "trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=1e-4",
    ]
    garden("train", "shakespeare_gpt2", *[a for s in overrides for a in ("--set", s)], "--run-dir", run)
    trained = Run(str(run)).model.get_layer("backbone").hub.token_embedding.embeddings.numpy()
    published = hf_import.encoder(str(folder)).hub.token_embedding.embeddings.numpy()
    assert 0 < np.abs(trained - published).max() < 0.01  # 20 Adam steps of at most 1e-4 from the checkpoint's
    assert (run / "assets").exists() and any(p.name.endswith(".model") for p in (run / "assets").rglob("*"))

    printed = garden("generate", run, "--prompt", "The bank", "--max-new-tokens", "16", "--temperature", "0").stdout
    # --chat: the run's copy of the folder's template makes the prompt, and the reply is printed alone
    greedy = ["--max-new-tokens", "16", "--temperature", "0", "--no-stream"]
    chat = garden("generate", run, "--chat", "--prompt", "Where did oil go?", "--prompt", "And grain?", *greedy).stdout
    rendered = [f"[INST] {question} [/INST]" for question in ("Where did oil go?", "And grain?")]  # <s> comes first
    plain = garden("generate", run, "--prompt", rendered[0], "--prompt", rendered[1], *greedy).stdout
    assert chat.split("\n\n") == [text.removeprefix(prompt) for text, prompt in zip(plain.split("\n\n"), rendered)]
    assert any("chat_template" in p.name for p in (run / "assets").iterdir())
    garden("export", run, "--format", "saved_model", "--format", "tflite", "--max-length", "64")
    manifest = json.loads((run / "export" / "manifest.json").read_text())["artifacts"]
    assert manifest["saved_model"]["generate_matches"] and manifest["model_none.tflite"]["greedy_matches"]
    assert saved_model_greedy(run / "export" / "saved_model", "The bank", 16) == printed.rstrip("\n")


def test_a_folder_of_another_family_or_of_tensorflow_weights_is_refused_in_one_line(folders, tmp_path):
    """The faults: a GPT-2 folder under task.model.backbone.type=llama was first refused with a
    vocabulary size to set; a GPT-2 folder that transformers' TF class saved was refused as 'does not
    contain tensor wte.weight', not saying the folder holds TensorFlow's names."""
    import transformers

    gpt2 = folders["gpt2"]
    with pytest.raises(GardenError, match=r"holds a gpt2 model, not llama; set task.model.backbone.type=gpt2$"):
        experiment_config("shakespeare_gpt2", sets=["task.model.backbone.type=llama", f"task.init_checkpoint={gpt2}"])
    window = tmp_path / "qwen2_window"  # Garden's cache runs Qwen 2 with full attention only
    shutil.copytree(folders["qwen2"], window)
    config = json.loads((window / "config.json").read_text())
    (window / "config.json").write_text(json.dumps({**config, "use_sliding_window": True}))
    with pytest.raises(GardenError, match=r"^this Qwen 2 checkpoint sets use_sliding_window; Garden's cache runs"):
        experiment_config("shakespeare_gpt2", sets=["task.model.backbone.type=qwen2", f"task.init_checkpoint={window}"])
    model = transformers.TFGPT2LMHeadModel(transformers.GPT2Config.from_pretrained(str(gpt2)))
    model(model.dummy_inputs)
    for safetensors in (True, False):  # model.safetensors under TF's names, or tf_model.h5
        folder = tmp_path / f"tf_{safetensors}"
        shutil.copytree(gpt2, folder, ignore=shutil.ignore_patterns("model.safetensors"))
        model.save_pretrained(str(folder), safe_serialization=safetensors)
        assert (folder / ("model.safetensors" if safetensors else "tf_model.h5")).is_file()
        with pytest.raises(GardenError, match="holds TensorFlow weights .* and Garden reads PyTorch's names; save it"):
            experiment_config("shakespeare_gpt2", sets=[f"task.init_checkpoint={folder}"])  # a GPT-2 by default

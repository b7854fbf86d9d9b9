"""Experiments for the other text heads: tagging (CoNLL), span QA (SQuAD), regression (STS-B),
multiple choice (SWAG-style JSONL) and masked LM. Files come from `input_path`; masked LM reads
Reuters R8 text from the catalog."""

from garden.config import ExperimentConfig, ModelConfig, TaskConfig, TokenizerConfig, component, register_experiment
from garden.experiments.text_classification import MINILM, TINY_BERT, text_data, text_trainer
from garden.experiments.tiny import tiny_trainer

SMALL_BERT = dict(num_layers=4, num_heads=4, hidden_dim=256, intermediate_dim=1024)


def text_experiment(
    task_type, head, loss, dataset, steps, backbone=MINILM, init="all_minilm_l6_v2", sequence_length=128, **columns
):
    """A `task_type` run of `backbone` (MiniLM by default) with `head` and `loss` on `dataset` files."""
    return ExperimentConfig.from_args(
        task=TaskConfig(
            type=task_type,
            init_checkpoint=init,
            model=ModelConfig(
                backbone=component("backbone", "bert", **backbone),
                head=head,
                tokenizer=TokenizerConfig(
                    vocabulary="" if init else "all_minilm_l6_v2", sequence_length=sequence_length
                ),
            ),
            loss=component("loss", loss),
            train_data=text_data(dataset, "train", 32, **columns),
            validation_data=text_data(dataset, "validation", 128, **columns),
        ),
        trainer=text_trainer(1e-4 if init else 5e-4, steps, steps_per_loop=20, interval=200),
    )


def tiny(*data, steps=60, steps_per_loop=20):
    """A tiny variant: the 2-layer BERT of the text tiny variants, from scratch, `steps` steps."""
    return [
        *TINY_BERT,
        *data,
        *tiny_trainer(steps, "polynomial", warmup=steps // 10, steps_per_loop=steps_per_loop),
        "trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate=0.002",
        "runtime.deterministic=true",
    ]


@register_experiment("conll_bert_small", tiny=tiny())
def conll_bert_small():
    """Token tagging (NER) with a 4-layer BERT from scratch on CoNLL files; not measured yet.

    garden train conll_bert_small --set task.train_data.input_path=train.conll \\
        --set task.validation_data.input_path=dev.conll --set task.model.head.params.num_classes=9
    """
    head = component("head", "token_tagging", num_classes=9, dropout=0.1)
    return text_experiment(
        "token_tagging", head, "masked_sparse_categorical_crossentropy", "conll", 2000, backbone=SMALL_BERT, init=""
    )


@register_experiment("multi_label_minilm", tiny=tiny())
def multi_label_minilm():
    """Multi-label text classification with MiniLM on TSV/CSV/JSONL files whose label column holds
    each text's labels (a JSON list, or names joined by label_separator); per-class thresholds set on
    the validation data; the best checkpoint kept by micro F1. Not measured yet (no multi-label corpus
    offline; tests/test_multi_label.py trains one built from R8 documents).

    garden train multi_label_minilm --set task.train_data.input_path=train.jsonl \\
        --set task.validation_data.input_path=dev.jsonl --set task.model.head.params.num_classes=N
    """
    head = component("head", "multi_label", num_classes=2, dropout=0.1)
    config = text_experiment(
        "text_multi_label_classification", head, "sigmoid_crossentropy", "multi_label_text_file", 2000
    )
    config.trainer.best_checkpoint_eval_metric = "f1_micro"
    return config


@register_experiment("squad_minilm", tiny=tiny())
def squad_minilm():
    """Extractive QA with MiniLM on SQuAD v1.1 JSON files; not measured yet (no SQuAD data offline).

    garden train squad_minilm --set task.train_data.input_path=train-v1.1.json \\
        --set task.validation_data.input_path=dev-v1.1.json
    """
    return text_experiment(
        "span_qa", component("head", "span_qa"), "span_crossentropy", "squad", 5000, sequence_length=384
    )


@register_experiment("stsb_minilm", tiny=tiny())
def stsb_minilm():
    """Sentence-pair similarity regression with MiniLM on GLUE STS-B TSV files; not measured yet.

    garden train stsb_minilm --set task.train_data.input_path=STS-B/train.tsv \\
        --set task.validation_data.input_path=STS-B/dev.tsv
    """
    head = component("head", "regression", dropout=0.1)
    columns = dict(text_column="sentence1", text_pair_column="sentence2", label_column="score")
    return text_experiment("text_regression", head, "mean_squared_error", "scored_text_file", 1000, **columns)


@register_experiment("swag_minilm", tiny=tiny())
def swag_minilm():
    """Multiple choice with MiniLM on JSONL rows {"text", "choices": [4], "label"}; not measured yet.

    garden train swag_minilm --set task.train_data.input_path=train.jsonl \\
        --set task.validation_data.input_path=val.jsonl
    """
    head = component("head", "multiple_choice", num_choices=4, dropout=0.1)
    return text_experiment(
        "multiple_choice", head, "sparse_categorical_crossentropy", "choices_jsonl", 2000, text_column="text"
    )


@register_experiment(
    "r8_mlm_small",  # predicting 30522 ids is slow on a CPU: 20 steps of 8 documents
    tiny=tiny(
        "task.train_data.num_examples=160",
        "task.train_data.global_batch_size=8",
        "task.validation_data.num_examples=64",
        steps=20,
        steps_per_loop=10,
    ),
)
def r8_mlm_small():
    """Masked-LM pretraining of a 4-layer BERT from scratch on Reuters R8 text (labels unused).

    garden train r8_mlm_small
    """
    head = component("head", "masked_lm", vocabulary_size=30522)
    return text_experiment(
        "masked_lm", head, "masked_sparse_categorical_crossentropy", "reuters_r8", 2000, backbone=SMALL_BERT, init=""
    )

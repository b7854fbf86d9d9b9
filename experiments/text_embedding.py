"""Sentence-embedding experiments (garden/tasks/text_embedding.py): MiniLM and static embeddings
trained contrastively on Reuters R8's classes, judged by same-class retrieval."""

from garden.config import ExperimentConfig, ModelConfig, TaskConfig, TokenizerConfig, component, register_experiment
from garden.experiments.text_classification import MINILM, text_data, text_trainer
from garden.experiments.tiny import tiny_trainer


def r8_embedding(backbone, init, learning_rate, steps, sequence_length=128):
    """`backbone` as an `embedding` model on Reuters R8, texts of a class each other's positives."""
    config = ExperimentConfig.from_args(
        task=TaskConfig(
            type="text_embedding",
            init_checkpoint=init,
            model=ModelConfig(
                backbone=backbone,
                head=component("head", "embedding"),
                tokenizer=TokenizerConfig(sequence_length=sequence_length),  # the checkpoint's or distilled folder's
            ),
            loss=component("loss", "contrastive", temperature=0.05),
            train_data=text_data("reuters_r8", "train", 32),
            validation_data=text_data("reuters_r8", "validation", 128),
            test_data=text_data("reuters_r8", "test", 128),
        ),
        trainer=text_trainer(learning_rate, steps, interval=steps // 2),
    )
    config.trainer.best_checkpoint_eval_metric = "map"
    return config


def tiny_embedding(learning_rate):
    """A tiny variant: 20 steps of 16 documents (of 320), validated on 300."""
    return [
        "task.model.tokenizer.sequence_length=64",
        "task.train_data.num_examples=320",
        "task.validation_data.num_examples=300",
        "task.test_data.num_examples=48",
        "task.train_data.global_batch_size=16",
        *tiny_trainer(20, "polynomial", warmup=2, steps_per_loop=10),
        f"trainer.optimizer_config.learning_rate.polynomial.initial_learning_rate={learning_rate}",
        "runtime.deterministic=true",
    ]


@register_experiment("r8_minilm_embedding", tiny=tiny_embedding(5e-5))
def r8_minilm_embedding():
    """all-MiniLM-L6-v2 (mean pooling, unit vectors) fine-tuned so that R8 documents of one class lie
    close: in-batch contrastive loss at temperature 0.05 over batches of 32.

    garden train r8_minilm_embedding && garden eval runs/r8_minilm_embedding --split test
    Measured in docs/results.md (same-class retrieval MAP on R8 test, against the untuned MiniLM).
    """
    return r8_embedding(component("backbone", "bert", **MINILM), "all_minilm_l6_v2", 2e-5, 300)


@register_experiment("r8_static_embedding", tiny=tiny_embedding(2e-3))
def r8_static_embedding():
    """Static embeddings distilled from MiniLM (model2vec), their table tuned the same way: no
    transformer at run time. Needs `garden distill static --out runs/static_minilm`.

    garden distill static --teacher minilm --pca-dims 256 --out runs/static_minilm
    garden train r8_static_embedding --set task.model.backbone.params.distilled_path=runs/static_minilm
    """
    backbone = component("backbone", "static", distilled_path="runs/static_minilm")
    return r8_embedding(backbone, "", 2e-3, 600, sequence_length=256)

"""benchmarks/peers.py's Model Garden peer: TF Model Garden's BERT sentence-prediction trainer.

Builds `official.nlp.tasks.sentence_prediction.SentencePredictionTask` with a BERT encoder
(`EncoderConfig(type="bert")` -> `official.nlp.modeling.networks.BertEncoder`, wrapped by
`models.BertClassifier`), an AdamW optimizer from `official.modeling.optimization.OptimizerFactory`
(type "adamw" = `legacy_adamw.AdamWeightDecay`, as in Model Garden's GLUE fine-tuning recipe),
and runs it with `official.core.base_trainer.Trainer` (an Orbit StandardTrainer: `steps_per_loop`
steps inside one tf.function with a tf.while_loop) on the default one-device strategy.
Model Garden uses tf_keras (Keras 2), not Keras 3.
"""

import statistics
import time

import tensorflow as tf
from official.core import base_trainer
from official.core import config_definitions as cfg
from official.modeling import performance
from official.modeling.optimization.configs import optimization_config
from official.nlp.configs import encoders
from official.nlp.tasks import sentence_prediction


def _to_model_garden(features, labels):
    """Maps {"token_ids", "segment_ids", "padding_mask"}, labels to Model Garden's (features, labels)."""
    return (
        {
            "input_word_ids": features["token_ids"],
            "input_mask": tf.cast(features["padding_mask"], tf.int32),
            "input_type_ids": features["segment_ids"],
        },
        {"label_ids": tf.cast(labels, tf.int32)},
    )


def model_garden_step_seconds(
    batches,
    num_classes,
    vocabulary_size,
    num_layers,
    num_heads,
    hidden_dim,
    intermediate_dim,
    learning_rate,
    steps,
    steps_per_loop,
    precision="float32",
):
    """Median seconds per training step (excluding the first loop, which traces) of Model Garden's
    sentence-prediction trainer: official.nlp.tasks.sentence_prediction.SentencePredictionTask with a BERT
    encoder of the given size (dropout 0.1, type_vocab_size 2, max_position_embeddings 512), an AdamW optimizer
    built by Model Garden's optimizer factory (official.modeling.optimization, constant learning rate, weight
    decay 0.01), run by official.core.base_trainer.Trainer (Orbit: `steps_per_loop` steps per tf.function call,
    via trainer.train(tf.constant(steps_per_loop))) on the one-device default strategy. AdamW clips
    the global gradient norm at 1.0 by default, as Garden's adamw does. `precision` "bfloat16" sets
    tf_keras's mixed_bfloat16 policy, as Model Garden's runtime.mixed_precision_dtype does."""
    performance.set_mixed_precision_policy(precision)
    encoder = encoders.EncoderConfig(
        type="bert",
        bert=encoders.BertEncoderConfig(
            vocab_size=vocabulary_size,
            hidden_size=hidden_dim,
            num_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_dim,
            dropout_rate=0.1,
            attention_dropout_rate=0.1,
            max_position_embeddings=512,
            type_vocab_size=2,
        ),
    )
    task_config = sentence_prediction.SentencePredictionConfig(
        model=sentence_prediction.ModelConfig(num_classes=num_classes, encoder=encoder)
    )
    optimization = optimization_config.OptimizationConfig(
        {
            "optimizer": {
                "type": "adamw",
                "adamw": {"weight_decay_rate": 0.01, "exclude_from_weight_decay": ["LayerNorm", "layer_norm", "bias"]},
            },
            "learning_rate": {"type": "constant", "constant": {"learning_rate": learning_rate}},
        }
    )
    task = sentence_prediction.SentencePredictionTask(task_config)
    seconds, _ = orbit_step_seconds(task, optimization, batches.map(_to_model_garden), steps, steps_per_loop, precision)
    return seconds


def orbit_step_seconds(task, optimization, dataset, steps: int, loop: int, precision: str, xla: bool = False):
    """(median seconds per step over the `trainer.train(loop)` calls after the first, the model) of
    Model Garden's `task` with the optimizer its factory builds for `optimization`, run by
    official.core.base_trainer.Trainer (Orbit) on the default strategy over `dataset`. `xla` is
    Model Garden's runtime.enable_xla, which its trainer honors on GPUs only."""
    runtime = cfg.RuntimeConfig(
        mixed_precision_dtype=precision, enable_xla=xla, num_gpus=len(tf.config.list_physical_devices("GPU"))
    )
    config = cfg.ExperimentConfig(
        task=task.task_config,
        trainer=cfg.TrainerConfig(optimizer_config=optimization, steps_per_loop=loop, train_steps=steps),
        runtime=runtime,
    )
    model = task.build_model()
    optimizer = task.create_optimizer(optimization, config.runtime)
    trainer = base_trainer.Trainer(config, task, model, optimizer, train=True, evaluate=False, train_dataset=dataset)
    per_step = []
    for _ in range(steps // loop):
        start = time.perf_counter()
        logs = trainer.train(tf.constant(loop))
        logs["training_loss"].numpy()
        per_step.append((time.perf_counter() - start) / loop)
    return statistics.median(per_step[1:]), model

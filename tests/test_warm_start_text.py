"""Warm starts of a text model from the installed MiniLM checkpoint: a new run starts from it, a
resumed run from its own checkpoint."""

import numpy as np

from garden.data.checkpoints import checkpoint_dir
from garden.models import hf_import
from garden.models.backbones.bert import BertEncoder
from garden.resolve import experiment_config
from garden.train.strategy import resolve_strategy
from garden.train.trainer import Trainer


def minilm_trainer(run_dir, steps):
    """A trainer of `steps` steps of r8_minilm (MiniLM warm-started from its installed checkpoint,
    dropout 0.1) on 32 short documents, with no validation."""
    config = experiment_config(
        "r8_minilm",
        sets=[
            "task.model.tokenizer.sequence_length=16",
            "task.train_data.num_examples=32",
            "task.train_data.global_batch_size=8",
            "task.validation_data.dataset=''",
            f"trainer.train_steps={steps}",
            "trainer.steps_per_loop=1",
            f"trainer.checkpoint_interval={steps}",
            f"trainer.validation_interval={steps}",
            "runtime.deterministic=true",
        ],
    )
    return Trainer(config, str(run_dir), resolve_strategy(config.runtime))


def test_init_checkpoint_warm_starts_a_new_run_and_not_a_resumed_one(tmp_path):
    """A new run starts from the checkpoint; a resumed run starts from its own newest checkpoint.
    (That a resumed run then trains as a straight one, dropout masks included, test_training.py and
    test_lora.py check.)"""
    folder = checkpoint_dir("all_minilm_l6_v2")
    published = BertEncoder(**hf_import.encoder_params(folder))
    hf_import.load_into(published, folder)
    first = minilm_trainer(tmp_path, 2)  # the first step, at the start of warmup, has a rate of 0
    first.set_up()  # what train() starts from
    for expected, given in zip(published.weights, first.model.get_layer("backbone").weights):
        np.testing.assert_array_equal(given.numpy(), expected.numpy(), err_msg=expected.path)
    first.train()
    trained = {w.path: w.numpy() for w in first.model.weights}
    resumed = minilm_trainer(tmp_path, 3)
    resumed.set_up()
    for given in resumed.model.weights:
        np.testing.assert_array_equal(given.numpy(), trained[given.path], err_msg=given.path)
    assert not np.array_equal(trained[published.weights[0].path], published.weights[0].numpy())  # it trained

"""Warm starts of a text model from the installed MiniLM checkpoint: a new run starts from it, a
resumed run keeps its trained weights and dropout masks (in its own file: its three MiniLM trainers
are the suite's longest test, which then runs beside test_training.py's)."""

import numpy as np

from garden.config import experiment_config
from garden.models import hf_import
from garden.models.backbones.bert import BertEncoder
from garden.models.pretrained import checkpoint_dir
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


def minilm_run(run_dir, steps):
    """The trainer after `steps` steps of `minilm_trainer`."""
    trainer = minilm_trainer(run_dir, steps)
    trainer.train()
    return trainer


def test_init_checkpoint_warm_starts_a_new_run_and_not_a_resumed_one(tmp_path):
    """A new run starts from the checkpoint; a resumed run keeps its trained weights and its dropout
    masks: 1 step then 1 more equal 2 steps straight, bit for bit."""
    folder = checkpoint_dir("all_minilm_l6_v2")
    published = BertEncoder(**hf_import.encoder_params(folder))
    hf_import.load_into(published, folder)
    straight = minilm_trainer(tmp_path / "straight", 2)
    straight.set_up()  # what train() starts from
    backbone = straight.model.get_layer("backbone")
    for expected, given in zip(published.weights, backbone.weights):
        np.testing.assert_array_equal(given.numpy(), expected.numpy(), err_msg=expected.path)
    straight.train()
    minilm_run(tmp_path / "resumed", 1)
    resumed = minilm_run(tmp_path / "resumed", 2)
    for expected, given in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(given.numpy(), expected.numpy(), err_msg=expected.path)
    moved = resumed.model.get_layer("backbone").weights[0].numpy()
    assert not np.array_equal(moved, published.weights[0].numpy())  # it trained

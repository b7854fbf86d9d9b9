"""Warm starts of a text model from the installed MiniLM checkpoint: a new run starts from it, a
resumed run from its own checkpoint; and from a Garden text run or a .weights.h5 file, by the route
image models take (garden/tasks/warm_start.py)."""

import numpy as np
from conftest import TINY_TEXT

from garden.data.checkpoints import checkpoint_dir
from garden.models import hf_import
from garden.models.backbones.bert import BertEncoder
from garden.resolve import experiment_config
from garden.run import Run
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


def test_a_garden_text_run_and_a_weights_file_warm_start_a_new_text_run(text_run, tmp_path):
    """The tiny R8 run's backbone (best weights, as a reader takes them), then the same weights saved
    as a .weights.h5 file, load into a new run of the same sizes; its head starts fresh."""
    source = Run(str(text_run)).model.get_layer("backbone")
    source.save_weights(str(tmp_path / "backbone.weights.h5"))
    for reference in (str(text_run), str(tmp_path / "backbone.weights.h5")):
        config = experiment_config("r8_minilm", sets=[*TINY_TEXT, f"task.init_checkpoint={reference}"])
        trainer = Trainer(
            config, str(tmp_path / reference.split("/")[-1].split(".")[0]), resolve_strategy(config.runtime)
        )
        assert trainer.task.warm_start(trainer.models)
        for ours, theirs in zip(trainer.model.get_layer("backbone").weights, source.weights, strict=True):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)

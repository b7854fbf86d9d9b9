import glob
import os
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from conftest import ROOT

from garden.train.checkpoints import Checkpoints, ema_weights, fingerprint


def test_ema_weights_are_swapped_in_and_back():
    variable = keras.Variable(np.zeros(2, np.float32), name="w")
    optimizer = keras.optimizers.SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
    optimizer.build([variable])
    for _ in range(2):
        optimizer.apply_gradients([(np.ones(2, np.float32), variable)])
    # Weights go 0 -> -1 -> -2; Keras's first update copies the weights (-1), the second averages: -1.5.
    np.testing.assert_allclose(variable.numpy(), -2.0)
    with ema_weights(optimizer, [variable]):
        np.testing.assert_allclose(variable.numpy(), -1.5)
    np.testing.assert_allclose(variable.numpy(), -2.0)


def test_fingerprint_tells_weights_apart():
    a, b = tf.Variable([1.0, 2.0]), tf.Variable([1.0, 2.0])
    assert fingerprint([a]) == fingerprint([b])
    b.assign([1.0, 2.0000002])
    assert fingerprint([a]) != fingerprint([b])


# Saves 128 MB checkpoints in a loop, every value equal to the step, announcing each write.
SAVER = """
import sys
import tensorflow as tf
from garden.train.checkpoints import Checkpoints
values, step = tf.Variable(tf.zeros([32, 1024, 1024])), tf.Variable(0, dtype=tf.int64)
checkpoints = Checkpoints({"values": values, "step": step}, sys.argv[1], chief=True, max_to_keep=2)
checkpoints.restore_latest()
while True:
    step.assign_add(1)
    values.assign(tf.fill(values.shape, float(step.numpy())))
    print(step.numpy(), flush=True)
    checkpoints.save(int(step))
"""


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_checkpoint_whole(tmp_path):
    directory, interrupted, latest_step = str(tmp_path), 0, 0
    for _ in range(3):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, directory], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        steps = [int(saver.stdout.readline()) for _ in range(3)]  # two writes done, the third begun
        deadline = time.monotonic() + 5
        while not glob.glob(os.path.join(directory, "ckpt-*_temp")) and time.monotonic() < deadline:
            time.sleep(0.001)  # kill once the third write has files on disk: a fast disk writes 128 MB in 50 ms
        saver.kill()
        saver.wait()
        assert steps[0] == latest_step + 1  # each restart resumed from the newest whole checkpoint
        interrupted += bool(glob.glob(os.path.join(directory, "ckpt-*_temp")))
        latest = tf.train.latest_checkpoint(directory)
        latest_step = int(latest.rsplit("-", 1)[1])
        values = tf.train.load_checkpoint(latest).get_tensor("values/.ATTRIBUTES/VARIABLE_VALUE")
        assert (
            steps[-1] - 2 <= latest_step <= steps[-1] and values.min() == values.max() == latest_step
        )  # whole, never torn
    assert interrupted >= 1  # at least one kill landed inside a write
    Checkpoints({}, directory, chief=True, max_to_keep=2)  # a chief starting again
    assert not glob.glob(os.path.join(directory, "ckpt-*_temp"))  # clears what killed writes left


def test_a_checkpoint_from_before_the_seed_states_resumes_and_a_newer_one_restores_them(tmp_path):
    """Checkpoints since the seed states hold them (a resumed run draws the dropout masks an
    uninterrupted one would); an older checkpoint, without them, still resumes its weights."""
    dropout = keras.layers.Dropout(0.5, seed=1)
    (seed,) = dropout.variables
    weights = tf.Variable([1.0, 2.0])
    Checkpoints({"weights": weights}, str(tmp_path / "old"), chief=True, max_to_keep=1).save(1)
    dropout(np.ones(8, np.float32), training=True)  # advances the seed state
    drawn = seed.numpy().copy()
    Checkpoints({"weights": weights, "seeds": [seed]}, str(tmp_path / "new"), chief=True, max_to_keep=1).save(1)
    dropout(np.ones(8, np.float32), training=True)
    weights.assign([0.0, 0.0])
    Checkpoints(
        {"weights": weights, "seeds": [seed]}, str(tmp_path / "old"), chief=True, max_to_keep=1, optional=["seeds"]
    ).restore_latest()
    np.testing.assert_array_equal(weights.numpy(), [1.0, 2.0])
    assert not np.array_equal(seed.numpy(), drawn)  # kept its own value: the old checkpoint has none
    Checkpoints(
        {"weights": weights, "seeds": [seed]}, str(tmp_path / "new"), chief=True, max_to_keep=1, optional=["seeds"]
    ).restore_latest()
    np.testing.assert_array_equal(seed.numpy(), drawn)

import keras
import numpy as np
import tensorflow as tf

from garden.train.checkpoints import ema_weights, fingerprint


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

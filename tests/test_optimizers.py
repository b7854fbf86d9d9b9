import keras
import numpy as np
import pytest
import tensorflow as tf

from garden import optimizers
from garden.errors import GardenError
from garden.optimizers import build_learning_rate, build_optimizer
from garden.registry import LOSSES
from garden.resolve import experiment_config


def optimization(**overrides):
    """The optimizer_config of mnist_resnet with `overrides` as --set suffixes."""
    sets = [f"trainer.optimizer_config.{k}={v}" for k, v in overrides.items()]
    return experiment_config("mnist_resnet", sets=sets).trainer.optimizer_config


def rate(schedule, step):
    return float(schedule(step)) if callable(schedule) else float(schedule)


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("sgd", keras.optimizers.SGD),
        ("adam", optimizers.Adam),
        ("adamw", optimizers.AdamW),
        ("lamb", keras.optimizers.Lamb),
        ("rmsprop", keras.optimizers.RMSprop),
    ],
)
def test_each_optimizer_builds_its_keras3_class(kind, cls):
    optimizer = build_optimizer(optimization(**{"optimizer.type": kind}))
    assert type(optimizer) is cls and isinstance(optimizer, keras.optimizers.Optimizer)


def _ten_adamw_steps(cls, amsgrad):
    """Ten steps of weight-decayed AdamW of `cls` on a dense gradient and an embedding's sparse one
    (unclipped, since clipping makes it dense): (the weights, the op types of the compiled step)."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(64, 32)).astype(np.float32), rng.normal(size=(100, 8)).astype(np.float32)]
    weights = [keras.Variable(w) for w in start]
    optimizer = cls(learning_rate=0.01, weight_decay=0.1, amsgrad=amsgrad)

    @tf.function
    def step(dense, rows, values):
        sparse = tf.IndexedSlices(values, rows, tf.constant([100, 8], tf.int64))
        optimizer.apply_gradients([(dense, weights[0]), (sparse, weights[1])])

    for _ in range(10):
        dense, rows = rng.normal(size=(64, 32)).astype(np.float32), rng.integers(0, 100, 5)
        step(dense, rows, rng.normal(size=(5, 8)).astype(np.float32))
    graph = step.get_concrete_function(dense, rows, rng.normal(size=(5, 8)).astype(np.float32)).graph
    ops = {op.type for function in graph._functions.values() for op in function.graph.get_operations()}
    ops |= {op.type for op in graph.get_operations()}
    return [w.numpy() for w in weights], ops, start


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adamw_follows_keras_adamw(amsgrad):
    """Without amsgrad the dense weight goes through the fused ResourceApplyAdam kernel (and the sparse
    one through Keras's update); with amsgrad, which the kernel lacks, both take Keras's update."""
    keras_weights, keras_ops, start = _ten_adamw_steps(keras.optimizers.AdamW, amsgrad)
    fused_weights, fused_ops, _ = _ten_adamw_steps(optimizers.AdamW, amsgrad)
    assert "ResourceApplyAdam" not in keras_ops
    assert ("ResourceApplyAdam" in fused_ops) is not amsgrad
    for expected, given in zip(keras_weights, fused_weights):
        assert np.abs(expected - given).max() < 1e-6
    assert np.abs(fused_weights[0] - start[0]).max() > 0.05  # it did move the weights


def test_sgd_settings_and_clipping_are_passed():
    optimizer = build_optimizer(
        optimization(
            **{
                "optimizer.type": "sgd",
                "optimizer.sgd.momentum": 0.8,
                "optimizer.sgd.nesterov": True,
                "optimizer.sgd.global_clipnorm": 2.0,
            }
        )
    )
    assert (optimizer.momentum, optimizer.nesterov, optimizer.global_clipnorm) == (0.8, True, 2.0)


def test_global_clipnorm_bounds_the_update():
    optimizer = build_optimizer(
        optimization(
            **{
                "optimizer.type": "sgd",
                "optimizer.sgd.global_clipnorm": 1.0,
                "learning_rate.type": "constant",
                "learning_rate.constant.learning_rate": 1.0,
                "warmup.type": "null",
            }
        )
    )
    variable = keras.Variable(np.zeros(4, np.float32))
    optimizer.apply_gradients([(np.full(4, 10.0, np.float32), variable)])
    np.testing.assert_allclose(np.linalg.norm(variable.numpy()), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "kind, settings, expected",
    [
        ("constant", {"learning_rate": 0.5}, {0: 0.5, 1000: 0.5}),
        ("cosine", {"initial_learning_rate": 1.0, "decay_steps": 100}, {0: 1.0, 50: 0.5, 100: 0.0}),
        (
            "polynomial",
            {"initial_learning_rate": 1.0, "decay_steps": 100, "end_learning_rate": 0.0},
            {0: 1.0, 50: 0.5, 100: 0.0},
        ),
        ("stepwise", {"boundaries": [10, 20], "values": [1.0, 0.1, 0.01]}, {0: 1.0, 15: 0.1, 25: 0.01}),
    ],
)
def test_schedules_have_the_expected_values(kind, settings, expected):
    overrides = {"learning_rate.type": kind, "warmup.type": "null"}
    overrides.update({f"learning_rate.{kind}.{k}": v for k, v in settings.items()})
    schedule = build_learning_rate(optimization(**overrides))
    for step, value in expected.items():
        assert rate(schedule, step) == pytest.approx(value, abs=1e-6), step


def test_linear_warmup_ramps_then_joins_the_schedule():
    schedule = build_learning_rate(
        optimization(
            **{
                "learning_rate.type": "cosine",
                "learning_rate.cosine.initial_learning_rate": 1.0,
                "learning_rate.cosine.decay_steps": 200,
                "warmup.type": "linear",
                "warmup.linear.warmup_steps": 100,
                "warmup.linear.warmup_learning_rate": 0.1,
            }
        )
    )
    after = 0.5 * (1 + np.cos(np.pi * 100 / 200))  # cosine at the end of warmup
    assert rate(schedule, 0) == pytest.approx(0.1)
    assert rate(schedule, 50) == pytest.approx(0.1 + 0.5 * (after - 0.1), abs=1e-6)
    assert rate(schedule, 100) == pytest.approx(after, abs=1e-6)
    assert rate(schedule, 150) == pytest.approx(0.5 * (1 + np.cos(np.pi * 150 / 200)), abs=1e-6)
    ramp = [rate(schedule, s) for s in range(0, 100, 10)]
    assert np.all(np.diff(ramp) > 0)


def test_weight_decay_skips_excluded_variables():
    optimizer = build_optimizer(
        optimization(
            **{
                "optimizer.type": "adamw",
                "optimizer.adamw.weight_decay_rate": 0.5,
                "optimizer.adamw.exclude_from_weight_decay": "[bias]",
                "optimizer.adamw.gradient_clip_norm": 0.0,
                "learning_rate.type": "constant",
                "learning_rate.constant.learning_rate": 0.1,
                "warmup.type": "null",
            }
        )
    )
    kernel = keras.Variable(np.ones(3, np.float32), name="kernel")
    bias = keras.Variable(np.ones(3, np.float32), name="bias")
    zeros = np.zeros(3, np.float32)
    optimizer.apply_gradients([(zeros, kernel), (zeros, bias)])
    np.testing.assert_allclose(kernel.numpy(), 1 - 0.1 * 0.5, rtol=1e-6)  # decayed
    np.testing.assert_allclose(bias.numpy(), 1.0)  # excluded


@pytest.mark.parametrize("dynamic", [True, False])
def test_ema_follows_model_gardens_dynamic_decay(dynamic):
    """The average after each SGD step, by hand: decay min(0.9, (1+t)/(10+t)) at step t (dynamic, Model
    Garden's default), else 0.9; Keras starts the average at the weights' first value."""
    optimizer = build_optimizer(
        optimization(
            **{
                "ema.average_decay": 0.9,
                "ema.dynamic_decay": str(dynamic).lower(),
                "warmup.type": "null",
                "optimizer.type": "sgd",
                "learning_rate": "{type: constant, constant: {learning_rate: 1.0}}",
            }
        )
    )
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9
    variable = keras.Variable(np.zeros(1, np.float32))
    average = None
    for step in range(4):
        optimizer.apply_gradients([(np.array([-1.0], np.float32), variable)])
        weight = step + 1.0
        decay = 0.0 if step == 0 else (min(0.9, (1 + step) / (10 + step)) if dynamic else 0.9)
        average = weight if average is None else decay * average + (1 - decay) * weight
    optimizer.finalize_variable_values([variable])
    np.testing.assert_allclose(variable.numpy(), [average], rtol=1e-5)


def test_missing_optimizer_type_is_a_clear_error():
    with pytest.raises(GardenError, match="optimizer.type is empty"):
        build_optimizer(optimization(**{"optimizer.type": "null"}))


def test_label_smoothing_matches_the_smoothed_cross_entropy_by_hand():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], np.float32)
    labels = np.array([0, 1])
    smoothing = 0.2
    targets = (1 - smoothing) * np.eye(3)[labels] + smoothing / 3
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(targets * log_softmax).sum(axis=1)
    loss = LOSSES.build("sparse_categorical_crossentropy", {"label_smoothing": smoothing})
    np.testing.assert_allclose(np.asarray(loss(labels, logits)), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "schedule, step, expected",
    [
        (
            "{type: exponential, exponential: {initial_learning_rate: 0.1, decay_steps: 10, decay_rate: 0.5}}",
            25,
            0.1 * 0.5**2.5,
        ),
        (
            "{type: exponential, exponential: {initial_learning_rate: 0.1, decay_steps: 10, decay_rate: 0.5, "
            "staircase: true}}",
            25,
            0.1 * 0.5**2,
        ),
    ],
)
def test_exponential_decay_by_hand(schedule, step, expected):
    config = experiment_config(
        "mnist_resnet",
        sets=[f"trainer.optimizer_config.learning_rate={schedule}", "trainer.optimizer_config.warmup.type=null"],
    )
    rate = build_learning_rate(config.trainer.optimizer_config)
    assert float(rate(step)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "warmup, step, fraction",
    [
        ("{type: polynomial, polynomial: {warmup_steps: 10, power: 0.5}}", 4, 0.4**0.5),
        ("{type: linear, linear: {warmup_steps: 10, warmup_learning_rate: 0.02}}", 4, None),
        ("{type: polynomial, polynomial: {warmup_steps: 10, power: 0.5}}", 30, 1.0),
    ],
)
def test_linear_and_polynomial_warmup_by_hand(warmup, step, fraction):
    """Warmup ramps to the schedule's rate at `warmup_steps` (polynomially: rate x (step/steps)^power;
    linearly from warmup_learning_rate), then follows the schedule."""
    constant = "{type: constant, constant: {learning_rate: 0.1}}"
    config = experiment_config(
        "mnist_resnet",
        sets=[f"trainer.optimizer_config.learning_rate={constant}", f"trainer.optimizer_config.warmup={warmup}"],
    )
    rate = float(build_learning_rate(config.trainer.optimizer_config)(step))
    expected = 0.1 * fraction if fraction is not None else 0.02 + (step / 10) * (0.1 - 0.02)
    assert rate == pytest.approx(expected, rel=1e-6)

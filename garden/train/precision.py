"""Mixed precision from `runtime.mixed_precision_dtype`; logits layers stay float32."""

import keras

from garden.errors import GardenError

POLICIES = {
    None: "float32",
    "": "float32",
    "float32": "float32",
    "float16": "mixed_float16",
    "mixed_float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
    "mixed_bfloat16": "mixed_bfloat16",
}


def set_policy(mixed_precision_dtype):
    """Sets Keras's global dtype policy and returns its name."""
    if mixed_precision_dtype not in POLICIES:
        raise GardenError(
            f"unknown runtime.mixed_precision_dtype '{mixed_precision_dtype}'; choose float32, float16 or bfloat16"
        )
    policy = POLICIES[mixed_precision_dtype]
    keras.config.set_dtype_policy(policy)
    return policy


def wrap_optimizer(optimizer, policy, loss_scale=None):
    """Adds dynamic loss scaling for float16; a numeric `runtime.loss_scale` is its initial scale."""
    if policy != "mixed_float16":
        return optimizer
    if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
        return keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=float(loss_scale))
    return keras.optimizers.LossScaleOptimizer(optimizer)

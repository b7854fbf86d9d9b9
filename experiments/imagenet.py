"""ImageNet recipes for KerasHub backbones, after Model Garden's image-classification configs.

Each reads ImageNet as Model Garden's TFRecords (`image/encoded`, `image/class/label` 1..1000 with 0
unused, hence 1001 classes) or any folder of class subfolders, from `input_path`:

    garden train resnet50_imagenet --set task.train_data.input_path='imagenet/train-*' \
        --set task.validation_data.input_path='imagenet/validation-*'

`--set runtime.mixed_precision_dtype=bfloat16` on CPUs with bf16 units, `=float16` on GPUs.
Not measured here: ImageNet needs a manual download that these machines cannot make, and one epoch
of ResNet-50 takes days on 2 CPU cores. Model Garden reports its own results beside its configs.
"""

from garden.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, component, register_experiment
from garden.experiments.tiny import tiny_trainer

TRAIN_IMAGES = 1_281_167


def tiny(schedule):
    """A tiny variant: the same network on 64x64 images, 5 steps of 8. The data is streamed, so it
    validates on all of validation_data: point input_path at a small folder for a smoke run."""
    return [
        "task.model.backbone.params.image_shape=[64, 64, 3]",
        "task.train_data.global_batch_size=8",
        "task.train_data.shuffle_buffer_size=64",
        "task.validation_data.global_batch_size=8",
        *tiny_trainer(5, schedule, warmup=1),
    ]


def _task(backbone, batch, l2, augmentation, head_dropout=0.0):
    """An image classification task on ImageNet TFRecords: random resized crops and flips (plus
    `augmentation`) for training, central 87.5% crops for validation, label smoothing 0.1."""
    return TaskConfig(
        type="image_classification",
        model=ModelConfig(
            backbone=backbone, head=component("head", "classification", num_classes=1001, dropout=head_dropout)
        ),
        loss=component("loss", "sparse_categorical_crossentropy", label_smoothing=0.1),
        l2_weight_decay=l2,
        train_data=DataConfig(
            input_path="imagenet/train-*",
            global_batch_size=batch,
            shuffle_buffer_size=10000,
            aug_crop=True,
            aug_rand_hflip=True,
            **augmentation,
        ),
        validation_data=DataConfig(
            input_path="imagenet/validation-*", global_batch_size=batch, center_crop_fraction=0.875
        ),
    )


def _trainer(batch, epochs, optimizer, learning_rate, warmup_epochs, ema=None):
    steps_per_epoch = TRAIN_IMAGES // batch
    epoch = max(steps_per_epoch // 100, 1) * 100  # checkpoints and validations about once an epoch
    optimization = {
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "warmup": {"type": "linear", "linear": {"warmup_steps": warmup_epochs * steps_per_epoch}},
    }
    if ema:
        optimization["ema"] = {"average_decay": ema}
    return {
        "train_steps": epochs * steps_per_epoch,
        "steps_per_loop": 100,
        "checkpoint_interval": epoch,
        "validation_interval": epoch,
        "max_to_keep": 5,
        "optimizer_config": optimization,
    }


@register_experiment("resnet50_imagenet", tiny=tiny("cosine"))
def resnet50_imagenet():
    """ResNet-50 as Model Garden's resnet_imagenet trains it: SGD with momentum 0.9, learning rate
    0.1 x batch/256 after a 5-epoch linear warmup, cosine decay over 90 epochs, label smoothing 0.1,
    L2 weight decay 1e-4 on kernels only, random resized crops and flips. Not measured (module docstring)."""
    batch, epochs = 1024, 90
    steps = epochs * (TRAIN_IMAGES // batch)
    return ExperimentConfig.from_args(
        task=_task(component("backbone", "resnet_v1", depth=50), batch, l2=1e-4, augmentation={}),
        trainer=_trainer(
            batch,
            epochs,
            {"type": "sgd", "sgd": {"momentum": 0.9}},
            {"type": "cosine", "cosine": {"initial_learning_rate": 0.1 * batch / 256, "decay_steps": steps}},
            warmup_epochs=5,
        ),
    )


def _rmsprop_recipe(backbone, batch, base_rate, decay_epochs, epochs, augmentation):
    """Model Garden's MobileNet/EfficientNet schedule: RMSprop (rho 0.9, momentum 0.9, epsilon 0.002),
    `base_rate` x batch/128 decayed by 0.97 every `decay_epochs` epochs after a 5-epoch warmup, EMA of
    the weights (0.9999), L2 1e-5, label smoothing 0.1, dropout 0.2 before the logits."""
    steps_per_epoch = TRAIN_IMAGES // batch
    return ExperimentConfig.from_args(
        task=_task(backbone, batch, l2=1e-5, augmentation=augmentation, head_dropout=0.2),
        trainer=_trainer(
            batch,
            epochs,
            {"type": "rmsprop", "rmsprop": {"rho": 0.9, "momentum": 0.9, "epsilon": 0.002}},
            {
                "type": "exponential",
                "exponential": {
                    "initial_learning_rate": base_rate * batch / 128,
                    "decay_steps": int(decay_epochs * steps_per_epoch),
                    "decay_rate": 0.97,
                    "staircase": True,
                },
            },
            warmup_epochs=5,
            ema=0.9999,
        ),
    )


@register_experiment("mobilenet_v3_imagenet", tiny=tiny("exponential"))
def mobilenet_v3_imagenet():
    """MobileNetV3-Large as Model Garden's mobilenet_imagenet trains it (RMSprop, EMA, 500 epochs of
    batch 4096, learning rate 0.008 x batch/128 decayed 0.97 every 2.5 epochs). Not measured (module docstring)."""
    backbone = component("backbone", "mobilenet_v3", variant="large_100")
    return _rmsprop_recipe(backbone, batch=4096, base_rate=0.008, decay_epochs=2.5, epochs=500, augmentation={})


@register_experiment("efficientnet_b0_imagenet", tiny=tiny("exponential"))
def efficientnet_b0_imagenet():
    """EfficientNet-B0 as Tan and Le (2019) and Model Garden train it: the MobileNet schedule (RMSprop,
    EMA) for 350 epochs, decay every 2.4 epochs, drop-connect 0.2 and AutoAugment. Not measured (module docstring)."""
    backbone = component("backbone", "efficientnet", variant="b0", dropout=0.2)
    return _rmsprop_recipe(
        backbone, batch=4096, base_rate=0.008, decay_epochs=2.4, epochs=350, augmentation={"aug_type": "autoaug"}
    )


@register_experiment("vit_b16_imagenet", tiny=tiny("cosine"))
def vit_b16_imagenet():
    """ViT-B/16 with DeiT's recipe (Touvron et al., 2021), as Model Garden's deit_imagenet_pretrain:
    AdamW (weight decay 0.05, off biases and norms) at 5e-4 x batch/512 with a 5-epoch warmup and cosine
    decay over 300 epochs, RandAugment (2 layers, magnitude 9), MixUp/CutMix, random erasing 0.25, label
    smoothing 0.1. Not measured (module docstring)."""
    batch, epochs = 1024, 300
    steps = epochs * (TRAIN_IMAGES // batch)
    augmentation = {
        "aug_type": "randaug",
        "aug_num_layers": 2,
        "aug_magnitude": 9.0,
        "random_erasing": 0.25,
        "mixup_and_cutmix": True,
    }
    adamw = {
        "weight_decay_rate": 0.05,
        "exclude_from_weight_decay": ["bias", "gamma", "beta", "embedding", "class_token"],
        "gradient_clip_norm": 1.0,
    }
    return ExperimentConfig.from_args(
        task=_task(component("backbone", "vit", size="base", patch_size=16), batch, l2=0.0, augmentation=augmentation),
        trainer=_trainer(
            batch,
            epochs,
            {"type": "adamw", "adamw": adamw},
            {"type": "cosine", "cosine": {"initial_learning_rate": 5e-4 * batch / 512, "decay_steps": steps}},
            warmup_epochs=5,
        ),
    )

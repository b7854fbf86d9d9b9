"""The trainer settings of experiments' tiny variants (`register_experiment(name, tiny=...)`)."""


def tiny_trainer(
    steps: int, schedule: str, warmup: int | None, steps_per_loop: int = 0, checkpoint_interval: int = 0
) -> list[str]:
    """`--set` strings that train `steps` steps after `warmup` warmup steps (None: the full
    experiment's), the learning rate `schedule` ("cosine", "polynomial", "exponential") decaying over
    those steps, and validate at the end (checkpoints every `checkpoint_interval` steps, default the
    end; loops of `steps_per_loop`)."""
    sets = [
        f"trainer.train_steps={steps}",
        f"trainer.steps_per_loop={steps_per_loop or steps}",
        f"trainer.checkpoint_interval={checkpoint_interval or steps}",
        f"trainer.validation_interval={steps}",
        f"trainer.optimizer_config.learning_rate.{schedule}.decay_steps={steps}",
    ]
    return sets if warmup is None else [*sets, f"trainer.optimizer_config.warmup.linear.warmup_steps={warmup}"]

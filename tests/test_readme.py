"""The README's 'Adding a backbone' example works as written."""

import re

import numpy as np
from conftest import ROOT

from garden.config import experiment_config
from garden.registry import BACKBONES, TASKS


def test_readme_backbone_example_registers_and_trains_a_step():
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    assert "mlp" in BACKBONES
    config = experiment_config(
        "mnist_resnet", sets=["task.model.backbone.type=mlp", "task.model.backbone.params.widths=[32]"]
    )
    assert config.task.model.backbone.params.as_dict() == {"image_shape": [28, 28, 1], "widths": [32]}
    task = TASKS.get(config.task.type)(config.task)
    model = task.build_model()
    backbone = model.get_layer("backbone")
    assert type(backbone).from_config(backbone.get_config()).count_params() == backbone.count_params()
    logits = model({"image": np.zeros((2, 28, 28, 1), np.float32)})["logits"]
    assert tuple(logits.shape) == (2, 10)

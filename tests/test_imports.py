"""The server is a light package: `garden serve` imports TensorFlow (and TensorFlow Text's ops),
aiohttp, gRPC and TF Serving's protos, not KerasHub, Model Garden or Garden's training side."""

import subprocess
import sys

from conftest import ROOT

# what `import tensorflow` alone does not load either (it loads keras itself, so keras is not listed)
TRAINING_SIDE = (
    "keras_hub",
    "official",
    "garden.data",
    "garden.models",
    "garden.tasks",
    "garden.train",
    "garden.experiments",
    "garden.generate.generator",
    "garden.export.exporting",
    "garden.registry",  # what `registry.load_all()` would have filled
)
SERVE = """
import sys
from garden import cli
code = cli.main(["serve", "no-such-folder"])  # the whole command up to loading the model
print(code, *sorted(sys.modules))
"""


def test_garden_serve_imports_no_training_side():
    result = subprocess.run([sys.executable, "-c", SERVE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    code, *modules = result.stdout.split()
    assert code == "2" and "no-such-folder is not a SavedModel folder" in result.stderr, result.stderr
    assert "garden.export.serve" in modules and "tensorflow" in modules
    loaded = [name for name in modules if any(name == f or name.startswith(f + ".") for f in TRAINING_SIDE)]
    assert not loaded

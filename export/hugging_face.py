"""`--format hf`: a decoder run as a Hugging Face folder (`hf/`: config.json, model.safetensors, the
tokenizer's files and the run's chat template) that transformers and vLLM load, written by KerasHub's
own exporters (`Backbone.export_to_transformers`, `Tokenizer.export_to_transformers`) from the
backbone with LoRA adapters merged. KerasHub 0.32 exports GPT-2, Gemma and Gemma 3 of the backbones
Garden builds, and Mistral and Qwen 2, which Garden builds but does not export yet (a Mistral folder
read back through KerasHub's converter is rounded to float16, so the check below would need Garden's
own import); it also exports Gemma 4, Llama 3 and Qwen 3.5, which Garden does not build (Garden's Llama
is KerasHub's `LlamaBackbone`, not `Llama3Backbone`). Other backbones are refused in one line.

Judged before it is moved into place: the folder, imported back through KerasHub's Hugging Face
converter (the other direction's code), gives the run's logits within 1e-4.
"""

import os
import shutil

import numpy as np

from garden.errors import GardenError
from garden.export.exporting import Job, staged
from garden.export.keras_hub_preset import checked_inputs, float_keras_hub_model, judged
from garden.export.reference import ExportReference
from garden.models import hf_import
from garden.registry import EXPORTERS

NAME = "hf"
BOUND = 1e-4  # max |Δ logits| of the folder imported back from the run's
EXPORTED = ("GPT2Backbone", "GemmaBackbone", "Gemma3Backbone")  # KerasHub 0.32's exporters Garden builds


def _logits(backbone, inputs):
    return np.asarray(backbone(inputs, training=False)["token_logits"], np.float64)


def write_folder(reference: ExportReference, export_dir: str) -> dict:
    """Writes `export_dir/hf` if the folder imported back gives the run's logits; returns the manifest."""
    task = reference.run.config.task
    if task.type != "causal_lm":
        raise GardenError(
            f"--format {NAME} writes decoder language models (KerasHub exports {', '.join(EXPORTED)}); export a "
            f"{task.type} run's backbone with --format keras_hub"
        )
    trained, plain = float_keras_hub_model(reference, NAME)
    if type(plain).__name__ not in EXPORTED:
        raise GardenError(
            f"KerasHub writes no Hugging Face folder of a {type(plain).__name__} (it exports {', '.join(EXPORTED)}); "
            "export it with --format keras_hub"
        )
    with staged(export_dir, NAME) as staging:
        plain.export_to_transformers(staging)
        reference.task.tokenizer.export_to_transformers(staging)
        if task.model.tokenizer.chat_template:
            shutil.copy(task.model.tokenizer.chat_template, os.path.join(staging, "chat_template.jinja"))
        imported = hf_import.encoder(staging)
        inputs = {k: v for k, v in checked_inputs(trained).items() if k in ("token_ids", "padding_mask")}
        backbone = reference.run.model.get_layer("backbone")
        error = float(np.max(np.abs(_logits(backbone, inputs) - _logits(imported, inputs))))
        measured = judged(NAME, error, BOUND, plain)
    return reference.record(export_dir, NAME, os.path.join(export_dir, NAME), measured)


@EXPORTERS.register(NAME)
def hugging_face_jobs(reference: ExportReference, export_dir: str, workdir: str) -> list[Job]:
    return [(NAME, lambda: write_folder(reference, export_dir))]


hugging_face_jobs.backbone_only = True  # judged against the run's backbone: export.py needs no held-out outputs

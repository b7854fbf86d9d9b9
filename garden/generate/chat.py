"""Chat templates: the Jinja template a checkpoint folder ships (Hugging Face's `chat_template`, in
tokenizer_config.json or chat_template.jinja) turns messages into the prompt text its model was
tuned on. Rendered as transformers renders it: jinja2's sandbox with trim_blocks, lstrip_blocks and
loop controls, `raise_exception`, and the tokenizer's `bos_token` and `eos_token`."""

import json

import jinja2
import jinja2.ext
import jinja2.sandbox

from garden.errors import GardenError


def read_chat_template(path: str) -> str:
    """The template in `path`: a .jinja file, or a tokenizer_config.json's `chat_template` (of a list
    of named templates, the one named default)."""
    with open(path) as file:
        if not path.endswith(".json"):
            return file.read()
        template = json.load(file).get("chat_template")
    if isinstance(template, list):
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        raise GardenError(f"{path} holds no chat_template (or none named default)")
    return template


def _refuse(message):
    raise GardenError(f"the chat template refuses the messages: {message}")


def chat_prompt(template: str, messages: list[dict], bos_token: str, eos_token: str) -> str:
    """The prompt text of `messages` ([{"role": ..., "content": ...}]), ready for the assistant's reply."""
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    environment.globals["raise_exception"] = _refuse
    try:
        compiled = environment.from_string(template)
    except jinja2.TemplateError as error:
        raise GardenError(f"the chat template does not parse: {error}") from error
    return compiled.render(messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token)

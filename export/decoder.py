"""Export of a decoder language model (task causal_lm), each artifact checked against the Keras
model before it is written.

- `saved_model/`: signature `generate` (also `serving_default`) takes prompt strings and the
  sampling settings and returns the continuations, with the tokenizer, the cached sampling loop and
  the detokenizer in the graph (`Generator.generate_text`); `beam_search` (`Generator.beam_text`);
  and `decode_step`.
- `model_<mode>.tflite`: `decode_step` alone, for a device that runs its own sampling loop: one
  token and its position in, the next token's logits out, and the key/value cache [layers, 1, 2,
  max_length, key/value heads, head_dim] an explicit input and output (zeros to start). Quantized
  in mode none, float16 or dynamic (int8 weights).

Checks: `decode_step`, fed held-out windows one token at a time, gives the logits of the Keras
model's forward pass over each whole window (max |Δ| within 1e-4 in float32) and its loss (within
0.02 nats per token when quantized); the SavedModel's `generate` gives exactly the texts of
`garden generate` on held-out prompts, all greedy and in a batch of greedy, sampled and penalized
rows (and so does its decode step streamed by `SavedModelStream`, for a greedy and a sampled row),
and its `beam_search` those of a width-4 search; a greedy loop over the TFLite decode step
gives exactly the Keras model's greedy text.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from garden.errors import GardenError
from garden.export.reference import ExportReference, spec_entry
from garden.export.stream import SavedModelStream
from garden.export.verify import Refused, median_latency_ms, refusal
from garden.generate.generator import SIGNATURE, Generator, beam_inputs, generate_inputs
from garden.generate.sampler import Rules, Sampling
from garden.registry import REFERENCES
from garden.signature_names import (
    BEAM_SEARCH_SIGNATURE,
    DECODE_STEP_SIGNATURE,
    DEFAULT_SIGNATURE,
    DETOKENIZE_SIGNATURE,
    GENERATE_SIGNATURE,
    TOKENIZE_SIGNATURE,
)

BOUNDS = {"none": 1e-4, "float16": None, "dynamic": None}  # max |Δ logits|; None: judged by the loss
PARITY_WINDOWS = 4
PROMPT_LENGTHS = (3, 8, 13, 21)  # tokens of held-out text; different lengths exercise the left padding
NEW_TOKENS = 24
MAX_LENGTH = 256  # the decode step's cache, unless --max-length or the model's positions say fewer
# each a setting per prompt: all greedy, then a mixed batch (greedy, sampled, penalized rows)
CHECKED_SAMPLINGS = (
    [Sampling(temperature=0)] * len(PROMPT_LENGTHS),
    [
        Sampling(temperature=0),
        Sampling(temperature=0.8, top_k=40, top_p=0.9),
        Sampling(temperature=1.0, repetition_penalty=1.3),
        Sampling(temperature=0, repetition_penalty=1.3),
    ],
)
SEEDS = [1, 2, 3, 4]
BEAMS = 4  # the width of the checked beam search
MAX_LOSS_INCREASE = 0.02  # nats per token that a quantized decode step may add on the held-out windows
# A decode step sums in another order than the full forward pass it is judged against, and logits
# are not bounded like probabilities: a trained shakespeare_char differs by 1.05e-5 in TensorFlow.


def decode_step_function(backbone, max_length, batch=1):
    """tf.function(token_ids [batch, 1], position [1], cache[, padding_mask]) -> {logits [batch,
    vocabulary], cache}. A step of more than one row also takes `padding_mask` [batch, max_length]:
    0 at the positions where a left-padded prompt has no token, so rows of different prompt lengths
    step together."""
    cache = backbone.empty_cache(batch, max_length)
    specs = [tf.TensorSpec([batch, 1], tf.int32), tf.TensorSpec([1], tf.int32), tf.TensorSpec(cache.shape, cache.dtype)]

    def step(token_ids, position, cache, padding_mask):
        # positions after `position` hold zeros, which the causal mask already hides
        logits, cache = backbone.decode(token_ids, padding_mask, cache, position[0])
        return {"logits": tf.cast(logits[:, -1], tf.float32), "cache": cache}

    if batch > 1:
        return tf.function(step, input_signature=[*specs, tf.TensorSpec([batch, max_length], tf.int32)])

    def decode_step(token_ids, position, cache):
        return step(token_ids, position, cache, tf.ones([1, max_length], tf.int32))

    return tf.function(decode_step, input_signature=specs)


def decode_length(backbone, max_length: int | None) -> int:
    """The tokens the decode step's cache holds: `max_length` (--max-length), refused past the
    positions a model has embeddings for (GPT-2's), else MAX_LENGTH or those positions, the fewer."""
    positions = getattr(backbone, "max_positions", None)  # None: rotary positions, without an end
    if max_length is None:
        return min(MAX_LENGTH, positions or MAX_LENGTH)
    if positions and max_length > positions:
        raise GardenError(
            f"--max-length {max_length} is past the {positions} positions this model has embeddings for; "
            f"pass --max-length {positions} or less"
        )
    return max_length


def write_saved_model(backbone, tokenizer, directory, max_length, batch=1, generator=None):
    """Writes the SavedModel (signatures generate, serving_default, beam_search and decode_step of
    `batch` rows; decode_step alone when `tokenizer` is None) into `directory`. A `generator` of the
    same backbone and tokenizer that has already generated lends its traced functions (the while
    loops of generate and beam_search are the export's longest traces)."""
    archive = keras.export.ExportArchive()  # the backbone untracked: ExportReference.write_saved_model says why
    if tokenizer is not None:
        tokenizer(["built"])  # a KerasHub tokenizer is built by its first call
        archive.track(tokenizer)
        generator = generator or Generator(backbone, tokenizer)
        archive.add_endpoint(GENERATE_SIGNATURE, generator.generate_text)
        archive.add_endpoint(DEFAULT_SIGNATURE, generator.generate_text)
        archive.add_endpoint(BEAM_SEARCH_SIGNATURE, generator.beam_text)
        archive.add_endpoint(TOKENIZE_SIGNATURE, generator.tokenized)
        archive.add_endpoint(DETOKENIZE_SIGNATURE, generator.detokenized)
    archive.add_endpoint(DECODE_STEP_SIGNATURE, decode_step_function(backbone, max_length, batch))
    archive.write_out(directory, verbose=False)


def greedy_rows(decode_step, prompts, steps, cache, max_length=None):
    """Greedy continuations [rows][steps] of `prompts` (lists of token ids) through a decode step of
    one row per prompt (the loop a device runs): the prompts, left-padded to the longest, are read
    one position at a time, then each row's chosen token is fed back. `max_length` (the step's
    cache length) is needed for more than one row, whose padding mask it sizes."""
    rows, longest = len(prompts), max(len(p) for p in prompts)
    ids = np.array([[0] * (longest - len(p)) + list(p) for p in prompts], np.int32)
    extra = {}
    if rows > 1:
        mask = np.ones([rows, max_length], np.int32)
        for row, prompt in enumerate(prompts):
            mask[row, : longest - len(prompt)] = 0
        extra = {"padding_mask": mask}
    new = []
    for position in range(longest + steps - 1):
        token = ids[:, position : position + 1] if position < longest else new[-1][:, None]
        out = decode_step(token_ids=token, position=np.array([position], np.int32), cache=cache, **extra)
        cache = out["cache"]
        if position + 1 >= longest:
            new.append(np.argmax(np.asarray(out["logits"]), axis=-1).astype(np.int32))
    return np.stack(new, axis=1).tolist()


def greedy_tokens(decode_step, prompt_ids, steps, cache):
    """Greedy continuation [steps] of one prompt through a decode step of one row."""
    return greedy_rows(decode_step, [prompt_ids], steps, cache)[0]


def _groups(items, size):
    """`items` in groups of `size`, the last filled up with copies of its first (for a step of fixed rows)."""
    for start in range(0, len(items), size):
        group = list(items[start : start + size])
        yield group + group[:1] * (size - len(group)), len(group)


@REFERENCES.register("decoder")
class DecoderReference(ExportReference):
    """Held-out windows and prompts of a causal_lm run, and what the Keras model makes of them."""

    bounds = {"saved_model": BOUNDS["none"], **{f"TFLite {mode}": bound for mode, bound in BOUNDS.items()}}
    quality = "loss"  # nats per token on the held-out windows, read one decode step at a time

    def __init__(self, run, options):
        super().__init__(run, options)
        self.backbone, self.tokenizer = run.model.get_layer("backbone"), run.task.tokenizer
        max_length = decode_length(self.backbone, options.max_length)
        if max_length < max(PROMPT_LENGTHS) + NEW_TOKENS:
            raise GardenError(
                f"--max-length must be at least {max(PROMPT_LENGTHS) + NEW_TOKENS} tokens (got {max_length})"
            )
        self.max_length, self.batch = max_length, options.decode_batch
        if self.batch < 1:
            raise GardenError(f"--decode-batch is a number of rows, 1 or more (got {self.batch})")
        # the padding_mask input of a step of several rows, for rows with no padding (a step of one has none)
        self.unpadded = {} if self.batch == 1 else {"padding_mask": np.ones([self.batch, max_length], np.int32)}
        windows = run.task.load(self.serving.held_out()).features["token_ids"]
        if len(windows) < PARITY_WINDOWS:
            raise GardenError(f"the held-out split has {len(windows)} windows; export checks {PARITY_WINDOWS}")
        windows = windows[np.linspace(0, len(windows) - 1, PARITY_WINDOWS).astype(int), : max_length + 1]
        self.inputs, self.targets = windows[:, :-1], windows[:, 1:]
        self.logits = self.backbone({"token_ids": self.inputs, "padding_mask": np.ones_like(self.inputs)})[
            "token_logits"
        ].numpy()
        self.loss = self.mean_loss(self.logits)
        self.prompts = [
            self.tokenizer.detokenize(self.inputs[i % PARITY_WINDOWS, :n]) for i, n in enumerate(PROMPT_LENGTHS)
        ]
        self.generator = Generator(self.backbone, self.tokenizer)
        self.texts = [
            self.generator.generate(self.prompts, NEW_TOKENS, sampling, seed=SEEDS) for sampling in CHECKED_SAMPLINGS
        ]
        self.beam_texts = self.generator.generate(self.prompts, NEW_TOKENS, None, beams=BEAMS)
        self.step_signature = decode_step_function(self.backbone, max_length, self.batch).input_signature

    def mean_loss(self, logits):
        return float(np.mean(keras.losses.sparse_categorical_crossentropy(self.targets, logits, from_logits=True)))

    def step_logits(self, decode_step):
        """Logits [windows, length, vocabulary] of the held-out windows fed through `decode_step`,
        `self.batch` windows at a time."""
        rows = []
        for group, count in _groups(self.inputs, self.batch):
            cache, steps = self.backbone.empty_cache(self.batch, self.max_length).numpy(), []
            for position in range(self.inputs.shape[1]):
                out = decode_step(
                    token_ids=np.array([[w[position]] for w in group], np.int32),
                    position=np.array([position], np.int32),
                    cache=cache,
                    **self.unpadded,
                )
                steps.append(np.asarray(out["logits"]))
                cache = out["cache"]
            rows.extend(np.stack(steps, axis=1)[:count])
        return np.array(rows)

    def greedy_matches(self, decode_step):
        """Whether `decode_step`'s greedy loop continues each prompt exactly as the Keras model does."""
        ends = self.generator.stop_ids(tf.zeros([1, 0], tf.string))  # a pretrained family's end token
        ids = [self.generator.prompt_ids(prompt) for prompt in self.prompts]
        found = []
        for group, count in _groups(ids, self.batch):
            cache = self.backbone.empty_cache(self.batch, self.max_length).numpy()
            found += greedy_rows(decode_step, group, NEW_TOKENS, cache, self.max_length)[:count]
        texts = self.generator.texts(tf.constant(found, tf.int32), tf.tile(ends, [len(found), 1])).numpy()
        return [text.decode("utf-8", errors="replace") for text in texts] == self.texts[0]  # all greedy

    def check_mode(self, mode):
        if mode not in BOUNDS:
            raise GardenError(
                f"a decode step exports with --quantize {', '.join(BOUNDS)} (got '{mode}'); its int8 "
                "activations would need calibration over the cache, which Garden does not do yet"
            )

    def write_saved_model(self, directory):
        write_saved_model(self.backbone, self.tokenizer, directory, self.max_length, self.batch, self.generator)

    def judge(self, kind, runner, signature=None):
        """A decode step (`signature`, a TFLite model's) by its logits, loss and greedy text; a SavedModel
        also by the texts its generate, beam_search and streamed decode step give."""
        if signature is not None:  # judged by its loss where its parity is not bounded (quantized)
            loss_bound = None if self.bounds.get(kind) is not None else MAX_LOSS_INCREASE
            return self.judged(kind, runner(signature), self.bound(kind), loss_bound)
        measured = self.judged(kind, runner(DECODE_STEP_SIGNATURE), self.bound(kind))
        for sampling, expected in zip(CHECKED_SAMPLINGS, self.texts):
            given = generate_inputs(self.prompts, NEW_TOKENS, sampling, SEEDS)
            texts = [t.decode("utf-8", errors="replace") for t in runner(GENERATE_SIGNATURE)(**given)["text"].numpy()]
            if texts != expected:
                row = next(i for i, (ours, theirs) in enumerate(zip(texts, expected)) if ours != theirs)
                raise Refused(
                    f"saved_model refused: generate with {sampling[row]} gave {texts[row]!r} where Keras gave "
                    f"{expected[row]!r}; nothing was written",
                    "saved_model",
                    measured,
                )
        for row in range(2):  # a greedy and a sampled row, streamed through the decode step
            sampling, seed, expected = CHECKED_SAMPLINGS[1][row], SEEDS[row], self.texts[1][row]
            rules = Rules.of([sampling], [seed])
            steps = {name: runner(name) for name in (TOKENIZE_SIGNATURE, DETOKENIZE_SIGNATURE, DECODE_STEP_SIGNATURE)}
            streamed = "".join(SavedModelStream(steps, self.prompts[row], NEW_TOKENS, rules, []).pieces())
            if streamed != expected:
                raise Refused(
                    f"saved_model refused: streaming with {sampling} gave {streamed!r} where Keras gave {expected!r}; "
                    "nothing was written",
                    "saved_model",
                    measured,
                )
        given = beam_inputs(self.prompts, NEW_TOKENS, BEAMS)
        texts = [t.decode("utf-8", errors="replace") for t in runner(BEAM_SEARCH_SIGNATURE)(**given)["text"].numpy()]
        if texts != self.beam_texts:
            raise Refused(
                f"saved_model refused: beam_search gave {texts[:1]} where Keras gave {self.beam_texts[:1]}; nothing "
                "was written",
                "saved_model",
                measured,
            )
        return {**measured, "generate_matches": True, "stream_matches": True, "beam_search_matches": True}

    def signature_to_convert(self):
        return DECODE_STEP_SIGNATURE

    def saved_model_to_convert(self, workdir, signature):
        """The decode step converts from a SavedModel of its own, without the tokenizer: TFLite's
        converter keeps every lookup table's initializer (a byte-level BPE has tables), and cannot
        convert them."""
        directory = os.path.join(workdir, "saved_model_decode_step")
        if not os.path.isdir(directory):
            write_saved_model(self.backbone, None, directory, self.max_length, self.batch)
        return directory

    def legend(self):
        return (
            f"loss = nats per token on {self.inputs.size} held-out tokens, read one decode step at a time; latency = "
            f"median of one decode step on {os.cpu_count()} CPU threads; parity = max |Δ logits| vs Keras; greedy = "
            "the decode step's greedy loop gives the Keras model's text"
        )

    def keras_entry(self):
        return {"loss": self.loss, "path": self.run.run_dir}

    def judged(self, kind, decode_step, bound, max_loss_increase=None):
        """What `decode_step` measures against the Keras model; raises Refused if it misses a bound."""
        logits = self.step_logits(decode_step)
        error, loss = float(np.max(np.abs(logits - self.logits))), self.mean_loss(logits)
        measured = {
            "max_abs_error": error,
            "error_bound": bound,
            "loss": loss,
            "loss_increase": loss - self.loss,
            "greedy_matches": self.greedy_matches(decode_step),
        }
        one_token = [self.inputs[0].reshape(-1, 1).astype(np.int32), np.arange(self.inputs.shape[1], dtype=np.int32)]
        cache = self.backbone.empty_cache(self.batch, self.max_length).numpy()
        measured["latency_ms"] = median_latency_ms(
            lambda ids, position: decode_step(
                token_ids=np.repeat(ids, self.batch, axis=0), position=position, cache=cache, **self.unpadded
            ),
            one_token,
        )
        reason = refusal(kind, error, bound)
        if not reason and max_loss_increase is not None and loss - self.loss > max_loss_increase:
            reason = (
                f"{kind} refused: held-out loss rises {loss - self.loss:.3g} nats per token, over the allowed "
                f"{max_loss_increase:.3g}; nothing was written"
            )
        if reason:
            raise Refused(reason, kind, measured)
        return measured

    def header(self):
        return {
            "experiment": self.run.config.task.name,
            "run_dir": self.run.run_dir,
            "checkpoint": self.run.checkpoint_path,
            "signatures": {
                GENERATE_SIGNATURE: {"inputs": {n: spec_entry(s) for n, s in SIGNATURE.items()}},
                DECODE_STEP_SIGNATURE: {
                    "inputs": {
                        n: spec_entry(s)
                        for n, s in zip(("token_ids", "position", "cache", "padding_mask"), self.step_signature)
                    }
                },
            },
            "max_length": self.max_length,
            "decode_batch": self.batch,
            "tokenizer": type(self.tokenizer).__name__,
            "held_out": {
                "split": self.serving.held_out().split,
                "windows": len(self.inputs),
                "tokens": int(self.inputs.size),
            },
            "keras_loss": self.loss,
        }

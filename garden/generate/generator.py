"""Text generation from a trained decoder: prompts are left-padded into one batch, read once into the
key/value cache, and each new token then costs one single-token decode step (compiled by XLA for
models under 8M weights: see XLA_BELOW). Rotary positions depend only on distances, so a
left-padded prompt continues exactly as it would alone.

`generate_text` is the whole of it as one graph, strings in and strings out (tokenizer, cached
sampling loop, detokenizer; output `text`): `garden generate` runs it for several prompts and a
SavedModel's `generate` signature is it; `beam_text` (its `beam_search` signature) searches beams
in place of sampling. `stream` runs the same cached steps from Python for one
prompt, yielding text as each token comes (what `garden generate` prints for one prompt).
`recompute` runs the same sampling with no cache, re-reading the whole prefix every step: the
reference the cache must match, and the baseline of benchmarks/generate.py."""

import numpy as np
import tensorflow as tf

from garden.errors import GardenError
from garden.generate.beam_search import beam_search
from garden.generate.sampler import PLAIN, Rules, Sampling, next_token, seen_tokens, traced_next_token, with_token
from garden.generate.streaming import sampled_pieces
from garden.models import kv_cache

# XLA compiles the single-token decode step of small models, whose many small ops cost more in
# dispatch than in arithmetic; from about 8M weights oneDNN's matmuls win (a GPT-2 decode step for 4
# rows on the 2-core Zen 5: 2.8 vs 6.3 ms at 1.0M weights, 6.1 vs 9.7 at 3.9M, 21 vs 15 at 17M, 140
# vs 69 at 124M; docs/benchmarks.md).
XLA_BELOW = 8_000_000
ROWS = tf.TensorSpec([None], tf.string)
# Every input holds one value per prompt (TF Serving's row format fits it, and requests with
# different settings batch into one call); `stop` holds each row's single-token strings ("" pads).
SIGNATURE = {
    "prompt": ROWS,
    "max_new_tokens": tf.TensorSpec([None], tf.int32),
    "seed": tf.TensorSpec([None], tf.int32),
    "temperature": tf.TensorSpec([None], tf.float32),
    "top_k": tf.TensorSpec([None], tf.int32),
    "top_p": tf.TensorSpec([None], tf.float32),
    "repetition_penalty": tf.TensorSpec([None], tf.float32),
    "stop": tf.TensorSpec([None, None], tf.string),
}
BEAM_SIGNATURE = {
    "prompt": ROWS,
    "max_new_tokens": tf.TensorSpec([None], tf.int32),
    "beams": tf.TensorSpec([None], tf.int32),
    "length_penalty": tf.TensorSpec([None], tf.float32),
    "stop": tf.TensorSpec([None, None], tf.string),
}


def _per_row(value, rows, name):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * rows
    if len(values) != rows:
        raise GardenError(f"give one {name} for all {rows} prompts or one per prompt (got {len(values)})")
    return values


def _stops(stop, rows):
    return tf.constant([list(stop)] * rows, tf.string, shape=[rows, len(stop)])


def generate_inputs(prompts, max_new_tokens, sampling=PLAIN, seed=0, stop=()) -> dict:
    """The `generate` signature's inputs: `sampling` and `seed` are one for every prompt or a list
    with one per prompt; the `stop` strings end every prompt's continuation."""
    rows = len(prompts)
    rules = Rules.of(_per_row(sampling, rows, "sampling"), _per_row(seed, rows, "seed"))
    return {
        "prompt": tf.constant(prompts, tf.string),
        "max_new_tokens": tf.fill([rows], max_new_tokens),
        **rules._asdict(),
        "stop": _stops(stop, rows),
    }


def beam_inputs(prompts, max_new_tokens, beams, length_penalty=1.0, stop=()) -> dict:
    """The `beam_search` signature's inputs, one search of width `beams` for every prompt."""
    rows = len(prompts)
    return {
        "prompt": tf.constant(prompts, tf.string),
        "max_new_tokens": tf.fill([rows], max_new_tokens),
        "beams": tf.fill([rows], beams),
        "length_penalty": tf.fill([rows], float(length_penalty)),
        "stop": _stops(stop, rows),
    }


class Generator:
    def __init__(self, backbone, tokenizer):
        self.backbone, self.tokenizer = backbone, tokenizer
        # a pretrained family reads prompts after its start token (`<bos>`, GPT-2's `<|endoftext|>`)
        # and ends a continuation at its end token, besides the `stop` strings
        self.max_positions = getattr(backbone, "max_positions", None)  # None: positions without an end (rotary)
        family = backbone.text_family
        self.start_id = tokenizer.start_token_id if family.starts_with_token else None
        # (Llama 3's tokenizer has two: <|end_of_text|>, and <|eot_id|> that ends a chat turn)
        ends = [getattr(tokenizer, name, None) for name in ("end_token_id", "end_token2_id")]
        self.end_ids = [end for end in ends if end is not None] if family.stops_at_end_token else []
        self.generate_text = tf.function(self._generate_text, input_signature=list(SIGNATURE.values()))
        self.beam_text = tf.function(self._beam_text, input_signature=list(BEAM_SIGNATURE.values()))
        spec = tf.TensorSpec([None, None], tf.int32)
        self._last_logits = tf.function(self._last_logits, input_signature=[spec, spec])
        strings = tf.TensorSpec([None], tf.string)  # one trace for any batch: a BPE tokenizer takes seconds
        self.left_padded = tf.function(self.left_padded, input_signature=[strings])
        self.stop_ids = tf.function(self.stop_ids, input_signature=[SIGNATURE["stop"]])
        self.texts = tf.function(self.texts, reduce_retracing=True)
        self._decode_one = tf.function(self._decode_one, jit_compile=backbone.count_params() < XLA_BELOW)
        self._prefill = tf.function(backbone.decode, reduce_retracing=True)
        self.detokenized = tf.function(self._detokenized, input_signature=[tf.TensorSpec([None], tf.int32)])
        self.tokenized = tf.function(self._tokenized, input_signature=[strings, SIGNATURE["stop"]])

    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int,
        sampling: Sampling | list[Sampling] = PLAIN,
        seed: int | list[int] = 0,
        stop: tuple[str, ...] = (),
        cache: bool = True,
        beams: int = 0,
        length_penalty: float = 1.0,
    ) -> list[str]:
        """The continuations of `prompts`, each at most `max_new_tokens` long and ending before the
        first of the `stop` strings (single tokens) it generates; sampled by `sampling` and `seed`
        (one for all prompts or one per prompt: a row gives the same text in any batch), or with
        `beams` the best of a beam search of that width (garden/generate/beam_search.py)."""
        self._check(prompts, max_new_tokens, stop)
        if beams:
            texts = self.beam_text(**beam_inputs(prompts, max_new_tokens, beams, length_penalty, stop))["text"]
        elif cache:
            texts = self.generate_text(**generate_inputs(prompts, max_new_tokens, sampling, seed, stop))["text"]
        else:
            inputs = generate_inputs(prompts, max_new_tokens, sampling, seed, stop)
            stop_ids = self.stop_ids(inputs["stop"])
            rules = Rules.of_inputs(inputs)
            new = self.recompute(*self.left_padded(inputs["prompt"]), max_new_tokens, rules, stop_ids)
            texts = self.texts(new, stop_ids, inputs["max_new_tokens"])
        return [text.decode("utf-8", errors="replace") for text in texts.numpy()]

    def stream(self, prompt: str, max_new_tokens: int, sampling: Sampling = PLAIN, seed: int = 0, stop=()):
        """Yields the continuation of one `prompt` as it is generated, in pieces of whole characters:
        the tokens of `generate` (the same sampling, seeds and cache), one decode step per token."""
        self._check([prompt], max_new_tokens, stop)  # now, not at the first piece
        inputs = generate_inputs([prompt], max_new_tokens, sampling, seed, stop)
        rules = Rules.of_inputs(inputs)
        stop_ids = set(self.stop_ids(inputs["stop"]).numpy()[0].tolist())
        return self._pieces(inputs["prompt"], max_new_tokens, rules, stop_ids)

    def _pieces(self, prompts, max_new_tokens, rules, stop_ids):
        token_ids, padding_mask = self.left_padded(prompts)
        prompt_length = int(token_ids.shape[1])
        mask = tf.concat([padding_mask, tf.ones([1, max_new_tokens], tf.int32)], axis=1)
        cache = kv_cache.empty_layers(self.backbone, 1, prompt_length, max_new_tokens)
        logits, cache = self._prefill(token_ids, mask, cache, 0)

        def decode_one(token, index):
            nonlocal cache
            position = tf.constant(prompt_length + index)  # a tensor: a Python int would compile per value
            logits, cache = self._decode_one(token, mask, cache, position)
            return logits

        seen = seen_tokens(token_ids, padding_mask, logits.shape[-1])
        yield from sampled_pieces(logits[:, -1], seen, rules, stop_ids, max_new_tokens, decode_one, self.text)

    def text(self, token_ids: list[int]) -> str:
        """The detokenized `token_ids` (bytes that are no character read as U+FFFD)."""
        return self.detokenized(tf.constant(token_ids, tf.int32))["text"].numpy().decode("utf-8", errors="replace")

    def _check(self, prompts, max_new_tokens, stop):
        """Refuses in one line what cannot be generated."""
        if max_new_tokens < 1:
            raise GardenError(f"--max-new-tokens must be at least 1 (got {max_new_tokens})")
        if not prompts or not all(prompts) or min(len(self.tokenizer(p)) for p in prompts) == 0:
            raise GardenError("every prompt needs at least one token; pass --prompt TEXT")
        if self.max_positions:
            longest = max(len(self.prompt_ids(p)) for p in prompts)
            if longest + max_new_tokens > self.max_positions:
                raise GardenError(
                    self._beyond_positions(f"the prompt's {longest} tokens and --max-new-tokens {max_new_tokens}")
                )
        for text in stop:
            if len(self.tokenizer(text)) != 1:
                raise GardenError(
                    f"stop string {text!r} is {len(self.tokenizer(text))} tokens; give stops of exactly one token"
                )

    def _rows_checked(self, prompt, named):
        """Asserts in the graph that every input of `named` holds one value per prompt."""
        for name, value in named.items():
            tf.debugging.assert_equal(tf.shape(value)[0], tf.shape(prompt)[0], f"{name} needs one value per prompt")
        tf.debugging.assert_positive(named["max_new_tokens"], "max_new_tokens must be at least 1")

    def _beyond_positions(self, what: str) -> str:
        return (
            f"{what} exceed the {self.max_positions} positions this model has embeddings for; shorten the prompt "
            "or ask for fewer new tokens"
        )

    def _positions_checked(self, padding_mask, max_new_tokens):
        """Asserts in the graph that each row's prompt and continuation fit in the model's positions."""
        if self.max_positions:
            ends = tf.reduce_sum(padding_mask, axis=1) + max_new_tokens
            message = self._beyond_positions("a prompt's tokens and its max_new_tokens")
            tf.debugging.assert_less_equal(ends, self.max_positions, message=message)

    def _generate_text(self, prompt, max_new_tokens, seed, temperature, top_k, top_p, repetition_penalty, stop):
        rules = Rules(seed, temperature, top_k, top_p, repetition_penalty)
        self._rows_checked(prompt, {"max_new_tokens": max_new_tokens, **rules._asdict(), "stop": stop})
        tf.debugging.assert_non_negative(temperature, "temperature must be >= 0")
        tf.debugging.assert_non_negative(top_k, "top_k must be >= 0")
        tf.debugging.assert_positive(top_p, "top_p must be in (0, 1]")
        tf.debugging.assert_less_equal(top_p, 1.0, "top_p must be in (0, 1]")
        tf.debugging.assert_positive(repetition_penalty, "repetition_penalty must be > 0")
        stop_ids = self.stop_ids(stop)
        token_ids, padding_mask = self.left_padded(prompt)
        self._positions_checked(padding_mask, max_new_tokens)
        new = self.cached(token_ids, padding_mask, max_new_tokens, rules, stop_ids)
        return {"text": self.texts(new, stop_ids, max_new_tokens)}

    def _beam_text(self, prompt, max_new_tokens, beams, length_penalty, stop):
        self._rows_checked(
            prompt, {"max_new_tokens": max_new_tokens, "beams": beams, "length_penalty": length_penalty, "stop": stop}
        )
        tf.debugging.assert_positive(beams, "beams must be at least 1")
        stop_ids = self.stop_ids(stop)
        token_ids, padding_mask = self.left_padded(prompt)
        self._positions_checked(padding_mask, max_new_tokens)
        new = beam_search(
            self.backbone, self._decode_one, token_ids, padding_mask, max_new_tokens, beams, length_penalty, stop_ids
        )
        return {"text": self.texts(new, stop_ids, max_new_tokens)}

    def _detokenized(self, token_ids):
        return {"text": self.tokenizer.detokenize(token_ids)}

    def _tokenized(self, prompt, stop):
        """What generation reads of `prompt` [rows] and `stop` [rows, stops] (a SavedModel's
        `tokenize`, for a sampling loop of one's own such as `garden serve`'s streaming)."""
        token_ids, padding_mask = self.left_padded(prompt)
        return {"token_ids": token_ids, "padding_mask": padding_mask, "stop_ids": self.stop_ids(stop)}

    def left_padded(self, prompts):
        """(token_ids, padding_mask) [batch, longest prompt] of string `prompts`, each at the right end."""
        pieces = self.tokenizer(prompts)
        tf.debugging.assert_positive(pieces.row_lengths(), "every prompt needs at least one token")
        if self.start_id is not None:
            starts = tf.RaggedTensor.from_tensor(tf.fill([tf.shape(prompts)[0], 1], self.start_id))
            pieces = tf.concat([starts, tf.cast(pieces, tf.int32)], axis=1)
        lengths, right = pieces.row_lengths(), pieces.to_tensor()
        token_ids = tf.reverse(tf.reverse_sequence(right, lengths, seq_axis=1, batch_axis=0), axis=[1])
        padding_mask = tf.reverse(tf.sequence_mask(lengths, tf.shape(right)[1], tf.int32), axis=[1])
        return tf.cast(token_ids, tf.int32), padding_mask

    def prompt_ids(self, prompt: str) -> list[int]:
        """The token ids that generation reads for one `prompt` (its start token included)."""
        return self.left_padded(tf.constant([prompt]))[0][0].numpy().tolist()

    def stop_ids(self, stop):
        """Token ids [rows, stops] of the single-token strings `stop` [rows, stops] ("" pads: -1), and
        a pretrained family's end tokens after them."""
        flat = tf.reshape(stop, [-1])
        pieces = self.tokenizer(tf.concat([flat, ["."]], axis=0))[:-1]  # KerasHub's ByteTokenizer fails on no strings
        tf.debugging.Assert(
            tf.reduce_all((pieces.row_lengths() == 1) | (flat == "")), ["each stop string must be one token"]
        )
        ids = tf.reshape(tf.cast(pieces.to_tensor(default_value=-1, shape=[None, 1]), tf.int32), tf.shape(stop))
        ends = tf.tile(tf.constant([self.end_ids], tf.int32, [1, len(self.end_ids)]), [tf.shape(stop)[0], 1])
        return tf.concat([ids, ends], axis=1)

    def texts(self, new, stop_ids, max_new_tokens=None):
        """The detokenized rows of `new` [batch, steps], each cut before its first stop token (and
        after its own `max_new_tokens` [batch], when given)."""
        is_stop = tf.reduce_any(new[:, :, None] == stop_ids[:, None, :], axis=-1)
        first_stop = tf.argmax(tf.cast(is_stop, tf.int32), axis=1, output_type=tf.int32)
        lengths = tf.where(tf.reduce_any(is_stop, axis=1), first_stop, tf.shape(new)[1])
        if max_new_tokens is not None:
            lengths = tf.minimum(lengths, max_new_tokens)
        return self.tokenizer.detokenize(tf.RaggedTensor.from_tensor(new, lengths=lengths))

    def cached(self, token_ids, padding_mask, max_new_tokens, rules, stop_ids):
        """New tokens [batch, longest max_new_tokens or fewer] (fewer when every row is done), with the cache."""
        batch, prompt_length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        steps = tf.reduce_max(max_new_tokens)
        mask = tf.concat([padding_mask, tf.ones([batch, steps], tf.int32)], axis=1)
        cache = kv_cache.empty_layers(self.backbone, batch, prompt_length, steps)
        logits, cache = self.backbone.decode(token_ids, mask, cache, 0)
        logits = logits[:, -1]
        tokens = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

        def step(index, logits, cache, seen, done, tokens):
            token = next_token(logits, seen, index, rules)
            done = done | tf.reduce_any(token[:, None] == stop_ids, axis=-1) | (index + 1 >= max_new_tokens)
            logits, cache = self._decode_one(token, mask, cache, prompt_length + index)
            return index + 1, logits, cache, with_token(seen, token), done, tokens.write(index, token)

        def unfinished(index, logits, cache, seen, done, tokens):
            return tf.logical_and(index < steps, tf.logical_not(tf.reduce_all(done)))

        state = (tf.constant(0), logits, cache, seen_tokens(token_ids, padding_mask, tf.shape(logits)[-1]))
        *_, tokens = tf.while_loop(unfinished, step, (*state, tf.zeros([batch], tf.bool), tokens))
        return tf.reshape(tf.transpose(tokens.stack()), [batch, -1])

    def _decode_one(self, token, mask, cache, position):
        """One new token per row through the cache: (its next-token logits, the cache)."""
        logits, cache = self.backbone.decode(token[:, None], mask, cache, position)
        return logits[:, -1], cache

    def _last_logits(self, token_ids, padding_mask):
        return self.backbone({"token_ids": token_ids, "padding_mask": padding_mask})["token_logits"][:, -1]

    def recompute(self, token_ids, padding_mask, steps, rules, stop_ids):
        """`cached` without the cache: every step runs the model over the whole sequence so far."""
        done = np.zeros(len(token_ids), bool)
        new = []
        logits = self._last_logits(token_ids, padding_mask)
        seen = seen_tokens(token_ids, padding_mask, logits.shape[-1])
        for index in range(steps):
            token = traced_next_token(logits, seen, tf.constant(index), rules)
            new.append(token)
            seen = with_token(seen, token)
            done |= (token.numpy()[:, None] == stop_ids.numpy()).any(axis=1)
            token_ids = tf.concat([token_ids, token[:, None]], axis=1)
            padding_mask = tf.concat([padding_mask, tf.ones_like(padding_mask[:, :1])], axis=1)
            if done.all():
                break
            logits = self._last_logits(token_ids, padding_mask)
        return tf.stack(new, axis=1)

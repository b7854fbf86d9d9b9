"""A decoder SavedModel's continuation of one prompt, sampled from Python and given in pieces as
they come: what `garden serve` streams, and what `garden export` checks against the Keras model."""

import tensorflow as tf

from garden.generate.sampler import Rules, seen_tokens
from garden.generate.streaming import sampled_pieces
from garden.signature_names import DECODE_STEP_SIGNATURE, DETOKENIZE_SIGNATURE, TOKENIZE_SIGNATURE


class SavedModelStream:
    """One prompt's continuation from a decoder SavedModel, sampled in Python through its
    `decode_step` and yielded in pieces of whole characters as they come: its `tokenize` reads the
    prompt and stops, the sampler is `garden generate`'s, and its `detokenize` writes the text. The
    tokens are those of its `generate` (the decode step's logits match the cached loop's to float
    rounding). Refusals raise ValueError."""

    def __init__(self, signatures: dict, prompt: str, max_new_tokens: int, rules: Rules, stop: list[str]):
        if not {TOKENIZE_SIGNATURE, DETOKENIZE_SIGNATURE, DECODE_STEP_SIGNATURE} <= set(signatures):
            raise ValueError("this model has no tokenize, detokenize and decode_step signatures to stream with")
        self.step, self.signatures, self.rules = signatures[DECODE_STEP_SIGNATURE], signatures, rules
        specs = self.step.structured_input_signature[1]
        self.cache_spec, self.rows = specs["cache"], specs["token_ids"].shape[0]
        # a step of several rows (--decode-batch) carries the prompt in its first; the others idle
        self.extra = {"padding_mask": tf.ones(specs["padding_mask"].shape, tf.int32)} if "padding_mask" in specs else {}
        stops = tf.constant([stop], tf.string, [1, len(stop)])
        read = signatures[TOKENIZE_SIGNATURE](prompt=tf.constant([prompt]), stop=stops)
        self.token_ids, self.padding_mask = read["token_ids"], read["padding_mask"]
        self.stop_ids = set(read["stop_ids"].numpy()[0].tolist()) - {-1}
        self.max_new_tokens, max_length = max_new_tokens, self.cache_spec.shape[3]  # [layers, rows, 2, length, ...]
        if self.token_ids.shape[1] + max_new_tokens > max_length:
            raise ValueError(
                f"the prompt's {self.token_ids.shape[1]} tokens and max_new_tokens {max_new_tokens} exceed the "
                f"{max_length} tokens of this model's decode step (export with a larger --max-length)"
            )

    def _step(self, token, position, cache):
        """(logits [1, vocabulary], cache) of `token` at `position` through the decode step."""
        rows = tf.pad(tf.reshape(token, [1, 1]), [[0, self.rows - 1], [0, 0]])
        out = self.step(token_ids=rows, position=tf.constant([position], tf.int32), cache=cache, **self.extra)
        return out["logits"][:1], out["cache"]

    def pieces(self):
        cache = tf.zeros(self.cache_spec.shape, self.cache_spec.dtype)
        for position in range(self.token_ids.shape[1]):  # the prompt, one token at a time
            logits, cache = self._step(self.token_ids[0, position], position, cache)

        def decode_one(token, index):
            nonlocal cache
            logits, cache = self._step(token, int(self.token_ids.shape[1]) + index, cache)
            return logits

        def text(token_ids):
            text = self.signatures[DETOKENIZE_SIGNATURE](token_ids=tf.constant(token_ids, tf.int32))["text"]
            return text.numpy().decode("utf-8", errors="replace")

        seen = seen_tokens(self.token_ids, self.padding_mask, logits.shape[-1])
        yield from sampled_pieces(logits, seen, self.rules, self.stop_ids, self.max_new_tokens, decode_one, text)

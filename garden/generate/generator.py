"""Text generation from a trained decoder: prompts are left-padded into one batch, read once into the
key/value cache, and each new token then costs one single-token decode step. Rotary positions
depend only on distances, so a left-padded prompt continues exactly as it would alone.

`recompute` runs the same sampling with no cache, re-reading the whole prefix every step: the
reference the cache must match, and the baseline of benchmarks/generate.py."""

import numpy as np
import tensorflow as tf

from garden.errors import GardenError
from garden.generate.sampler import sample


class Generator:
    def __init__(self, backbone, tokenizer):
        self.backbone, self.tokenizer = backbone, tokenizer
        spec = tf.TensorSpec([None, None], tf.int32)
        self._last_logits = tf.function(self._last_logits, input_signature=[spec, spec])
        self._cached = tf.function(self._cached)

    def generate(self, prompts, max_new_tokens, sampling, seed=0, stop=(), cache=True):
        """The continuations (strings) of `prompts`, each at most `max_new_tokens` long and ending
        before the first of the `stop` strings (single tokens) it generates."""
        if max_new_tokens < 1:
            raise GardenError(f"--max-new-tokens must be at least 1 (got {max_new_tokens})")
        token_ids, padding_mask = self.left_padded(prompts)
        stop_ids = self.stop_ids(stop)
        run = self._cached if cache else self.recompute
        new = run(token_ids, padding_mask, max_new_tokens, sampling, tf.constant(seed, tf.int32), stop_ids).numpy()
        texts = []
        for row in new:
            ends = np.flatnonzero(np.isin(row, stop_ids.numpy()))
            texts.append(self.tokenizer.detokenize(row[: ends[0] if len(ends) else len(row)]))
        return texts

    def left_padded(self, prompts):
        """(token_ids, padding_mask) [batch, longest prompt], each prompt at the right end."""
        pieces = [self.tokenizer(prompt).numpy() for prompt in prompts]
        if not pieces or min(len(p) for p in pieces) == 0:
            raise GardenError("every prompt needs at least one token; pass --prompt TEXT")
        length = max(len(p) for p in pieces)
        token_ids = np.zeros((len(pieces), length), np.int32)
        padding_mask = np.zeros((len(pieces), length), np.int32)
        for row, piece in enumerate(pieces):
            token_ids[row, length - len(piece):] = piece
            padding_mask[row, length - len(piece):] = 1
        return tf.constant(token_ids), tf.constant(padding_mask)

    def stop_ids(self, stop):
        ids = []
        for text in stop:
            piece = self.tokenizer(text).numpy().tolist()
            if len(piece) != 1:
                raise GardenError(f"stop string {text!r} is {len(piece)} tokens; give stops of exactly one token")
            ids += piece
        return tf.constant(ids, tf.int32, shape=[len(ids)])

    def _cached(self, token_ids, padding_mask, steps, sampling, seed, stop_ids):
        batch, prompt_length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
        mask = tf.concat([padding_mask, tf.ones([batch, steps], tf.int32)], axis=1)
        cache = self.backbone.empty_cache(batch, prompt_length + steps)
        logits, cache = self.backbone.decode(token_ids, mask, cache, 0)
        tokens = tf.TensorArray(tf.int32, size=0, dynamic_size=True)

        def step(index, logits, cache, done, tokens):
            token = sample(logits, tf.stack([seed, index]), sampling)
            done = done | tf.reduce_any(token[:, None] == stop_ids[None, :], axis=-1)
            logits, cache = self.backbone.decode(token[:, None], mask, cache, prompt_length + index)
            return index + 1, logits[:, -1], cache, done, tokens.write(index, token)

        def unfinished(index, logits, cache, done, tokens):
            return tf.logical_and(index < steps, tf.logical_not(tf.reduce_all(done)))

        done = tf.zeros([batch], tf.bool)
        _, _, _, _, tokens = tf.while_loop(unfinished, step, (tf.constant(0), logits[:, -1], cache, done, tokens))
        return tf.transpose(tokens.stack())

    def _last_logits(self, token_ids, padding_mask):
        return self.backbone({"token_ids": token_ids, "padding_mask": padding_mask})["token_logits"][:, -1]

    def recompute(self, token_ids, padding_mask, steps, sampling, seed, stop_ids):
        """`_cached` without the cache: every step runs the model over the whole sequence so far."""
        done = np.zeros(len(token_ids), bool)
        new = []
        for index in range(steps):
            token = sample(self._last_logits(token_ids, padding_mask), tf.stack([seed, index]), sampling)
            new.append(token)
            done |= np.isin(token.numpy(), stop_ids.numpy())
            token_ids = tf.concat([token_ids, token[:, None]], axis=1)
            padding_mask = tf.concat([padding_mask, tf.ones_like(padding_mask[:, :1])], axis=1)
            if done.all():
                break
        return tf.stack(new, axis=1)

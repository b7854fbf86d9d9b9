"""One row's continuation sampled from Python a token at a time and given in pieces of whole
characters: what `Generator.stream` and a SavedModel's `SavedModelStream` (export/stream.py, which
`garden serve` streams with) both run. TensorFlow only, so the server imports it."""

import tensorflow as tf

from garden.generate.sampler import traced_next_token, with_token

REPLACEMENT = "\ufffd"  # what tokenizers' detokenizing puts for bytes that are not (yet) a character


class Pieces:
    """The text of a stream of tokens in pieces of whole characters: a character split over tokens
    reads as U+FFFD until its last byte comes, so only the text before a trailing U+FFFD is given."""

    def __init__(self, text):
        self.text = text  # token ids -> str
        self.line, self.shown = [], 0  # the tokens since the last newline; their characters given

    def add(self, token: int) -> str:
        """The text that `token` settles."""
        self.line.append(token)
        text = self.text(self.line)
        settled = len(text.rstrip(REPLACEMENT))
        piece, self.shown = text[self.shown : settled], settled
        if text.endswith("\n"):  # restart the line, keeping the newline as context for spacing
            self.line = self.line[-1:]
            self.shown = len(self.text(self.line))
        return piece

    def rest(self) -> str:
        return self.text(self.line)[self.shown :]


def sampled_pieces(logits, seen, rules, stop_ids, max_new_tokens, decode_one, text):
    """Yields a continuation of one row in pieces of whole characters as it is sampled: `logits` [1,
    vocabulary] are the next token's, `seen` [1, vocabulary] the tokens read so far, `stop_ids` a
    set, `decode_one(token [1], index) -> logits` a step of the model and `text(ids) -> str` the
    detokenizer. The tokens are those of `Generator.cached` under the same `rules`."""
    pieces = Pieces(text)
    for index in range(max_new_tokens):
        token = traced_next_token(logits, seen, tf.constant(index), rules)
        if int(token[0]) in stop_ids:
            break
        seen = with_token(seen, token)
        yield pieces.add(int(token[0]))
        logits = decode_one(token, index)
    yield pieces.rest()

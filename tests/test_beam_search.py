"""Beam search (garden/generate/beam_search.py) against brute force on a decoder with a vocabulary
of 8, against greedy decoding at width 1, and through `garden generate` and the exported SavedModel."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import garden

from garden.generate.beam_search import beam_search
from garden.registry import BACKBONES

NO_STOP = tf.zeros([0], tf.int32)


@pytest.fixture(scope="module")
def decoder():
    """A random 2-layer decoder over 8 tokens, its embeddings scaled to 0.35 so that its next-token
    distributions are flat enough for greedy decoding to miss the likeliest continuation."""
    keras.utils.set_random_seed(0)
    params = dict(vocabulary_size=8, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64)
    backbone = BACKBONES.build("decoder", params, name="backbone")
    for variable in backbone.weights:
        if "embedding" in variable.path:
            variable.assign(variable * 0.35)
    return backbone


def _decode_one(backbone):
    def decode_one(token, mask, cache, position):
        logits, cache = backbone.decode(token[:, None], mask, cache, position)
        return logits[:, -1], cache

    return decode_one


def _search(backbone, prompts, steps, beams, length_penalty=0.0, stop_ids=NO_STOP):
    """Beam search over left-padded `prompts` (lists of ids); `steps` and `beams` are one for every
    prompt or a list of one per prompt."""
    rows = len(prompts)
    longest = max(len(p) for p in prompts)
    ids = np.array([[0] * (longest - len(p)) + p for p in prompts], np.int32)
    mask = np.array([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], np.int32)
    per_row = [tf.constant(v if isinstance(v, list) else [v] * rows) for v in (steps, beams, float(length_penalty))]
    found = beam_search(backbone, _decode_one(backbone), ids, mask, *per_row, tf.tile(stop_ids[None], [rows, 1]))
    return found.numpy().tolist()


def _log_probs(backbone, prompt, continuations):
    """log p(continuation | prompt) of each continuation, from the full forward pass (no cache)."""
    ids = np.array([prompt + list(c) for c in continuations], np.int32)
    logits = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})["token_logits"].numpy()
    log_probs = (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    steps = len(continuations[0])
    positions = np.arange(len(prompt) - 1, len(prompt) - 1 + steps)
    return log_probs[:, positions, :][np.arange(len(ids))[:, None], np.arange(steps), np.array(continuations)].sum(-1)


def test_a_beam_as_wide_as_every_prefix_finds_the_likeliest_continuation(decoder):
    prompt = [3, 1, 4]
    continuations = list(itertools.product(range(8), repeat=4))  # 4,096
    scores = _log_probs(decoder, prompt, continuations)
    (found,) = _search(decoder, [prompt], 4, beams=8**3)
    best = continuations[int(np.argmax(scores))]
    assert scores[continuations.index(tuple(found))] >= scores.max() - 1e-4, (found, best)
    (greedy,) = _search(decoder, [prompt], 4, beams=1)  # greedy misses it: -3.26 against -2.97 when written
    assert scores[continuations.index(tuple(greedy))] < scores.max() - 0.1


def test_width_one_is_greedy_and_each_prompt_searches_as_alone(decoder):
    prompts = [[3, 1, 4, 1, 5], [2, 7]]
    greedy = []
    for prompt in prompts:
        ids = list(prompt)
        for _ in range(6):
            logits = decoder({"token_ids": np.array([ids]), "padding_mask": np.ones((1, len(ids)), np.int32)})
            ids.append(int(np.argmax(logits["token_logits"].numpy()[0, -1])))
        greedy.append(ids[len(prompt) :])
    assert _search(decoder, prompts, 6, beams=1) == greedy
    assert _search(decoder, prompts, 6, beams=5) == [_search(decoder, [p], 6, beams=5)[0] for p in prompts]
    # rows of their own widths and lengths in one batch: each searches as alone (the batch runs to its longest)
    mixed = _search(decoder, prompts + prompts, [6, 6, 3, 4], beams=[1, 5, 7, 2])
    alone = [_search(decoder, [p], n, beams=w)[0] for p, n, w in zip(prompts + prompts, [6, 6, 3, 4], [1, 5, 7, 2])]
    assert [row[: len(a)] for row, a in zip(mixed, alone)] == alone and mixed[0] == greedy[0]


def test_a_stop_token_ends_a_beam_and_the_length_penalty_ranks_finished_beams(decoder):
    """With token 0 as the stop, each row's best beam is the best of: every sequence that stops at
    step k (ranked by its summed log-probability over k ** penalty), and every 5-token sequence."""
    prompt, winners = [3, 1, 4], []
    for penalty in (0.0, 2.0):
        (found,) = _search(decoder, [prompt], 5, beams=8**4, length_penalty=penalty, stop_ids=tf.constant([0]))
        length = found.index(0) + 1 if 0 in found else 5
        candidates = {}
        for k in range(1, 6):
            heads = list(itertools.product(range(1, 8), repeat=k - 1))
            tails = [h + (0,) for h in heads] if k < 5 else [h + (t,) for h in heads for t in range(8)]
            candidates.update({t: s / k**penalty for t, s in zip(tails, _log_probs(decoder, prompt, tails))})
        best = max(candidates.values())
        assert candidates[tuple(found[:length])] >= best - 1e-4, (penalty, found)
        winners.append(found[:length])
    assert winners[0] != winners[1]  # stopping at once wins by log-probability alone, 5 tokens under penalty 2


def test_garden_generate_searches_beams_and_refuses_sampling_with_them(trained_lm):
    """(The exported SavedModel's `beam_search` is checked in tests/test_generate.py.)"""
    command = ["generate", trained_lm, "--prompt", "ROMEO:", "--max-new-tokens", "12"]
    assert garden(*command, "--beams", "1").stdout == garden(*command, "--temperature", "0").stdout
    refused = garden(*command, "--beams", "2", "--top-k", "5", check=False)
    assert refused.returncode == 2 and "beam search does not sample" in refused.stderr
    for width in ("0", "-1"):  # --beams 0 sampled at temperature 1
        refused = garden(*command, "--beams", width, check=False)
        assert refused.returncode == 2 and refused.stdout == ""
        assert (
            refused.stderr == f"garden: error: --beams is a width of 1 or more (got {width}); leave it out to sample\n"
        )

"""Tokens per second: generation with the key/value cache vs recomputing the whole prefix each step.

Both generate `--tokens` new tokens greedily from the same prompts with the same trained decoder on
this CPU, in one run, alternating rounds; both must give the same tokens, or the script fails.
Then the cache's cost per token at 1,000 and at 4,000 new tokens from one prompt: flat when the
decoder has a sliding window (its cache is a ring), growing with the text otherwise.

    python benchmarks/generate.py runs/shakespeare_char [--tokens 256] [--quick]
"""

import argparse
import time

from garden import registry
from garden.generate.generator import Generator
from garden.generate.sampler import Sampling
from garden.run import Run

PROMPTS = ["ROMEO:", "First Citizen:\nBefore we proceed any further, hear me speak.", "KING"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a trained causal_lm run")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument(
        "--quick", action="store_true", help="16 tokens, one round, then 50 and 200: proves the script works"
    )
    args = parser.parse_args()
    registry.load_all()
    run = Run(args.run_dir)
    generator = Generator(run.model.get_layer("backbone"), run.task.tokenizer)
    tokens, rounds = (16, 1) if args.quick else (args.tokens, 3)
    greedy = Sampling(temperature=0)
    texts = {
        cache: generator.generate(PROMPTS, tokens, greedy, cache=cache) for cache in (True, False)
    }  # trace, warm up
    if texts[True] != texts[False]:
        raise SystemExit("the cached and recomputed generations differ")
    seconds = {True: float("inf"), False: float("inf")}
    for _ in range(rounds):
        for cache in seconds:
            start = time.perf_counter()
            generator.generate(PROMPTS, tokens, greedy, cache=cache)
            seconds[cache] = min(seconds[cache], time.perf_counter() - start)
    generated = tokens * len(PROMPTS)
    print(f"{len(PROMPTS)} prompts x {tokens} new tokens, greedy, best of {rounds} rounds; identical tokens both ways")
    print(f"recompute the prefix: {generated / seconds[False]:10.1f} tokens/s")
    print(f"key/value cache:      {generated / seconds[True]:10.1f} tokens/s")
    print(f"ratio cache / recompute: {seconds[False] / seconds[True]:7.1f}x")
    for length in (50, 200) if args.quick else (1000, 4000):
        generator.generate(PROMPTS[:1], length, greedy)  # compiles the decode step for this cache's shape
        start = time.perf_counter()
        generator.generate(PROMPTS[:1], length, greedy)
        print(f"key/value cache, {length} new tokens: {1000 * (time.perf_counter() - start) / length:7.2f} ms/token")


if __name__ == "__main__":
    main()

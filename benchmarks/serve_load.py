"""`garden serve` holding a language model under load, with bad and oversized requests among the good.

The model is a decoder language model SavedModel (`garden export RUN` of a causal_lm run, or by
default the tiny one the serving tests export: 1 layer, hidden size 32, byte tokens, a decode step
of 64 positions, random weights), served by `python -m garden.cli serve lm=PATH` as a subprocess on
a free port of 127.0.0.1 with its default limits (--max-beams 16, --max-new-tokens 1024) and
`--max-generation-bytes` BUDGET (default 4 MB, small enough that some good requests must wait).

A seeded pool of `--pool` good requests is answered first by the SavedModel called directly, one
request at a time: `generate` requests of 1-4 rows (prompts of 5 or 9 characters, 4, 8 or 16 new tokens,
greedy or sampled with seeds, top-k, top-p and repetition penalties; each row's settings its own)
and `beam_search` requests of 1-2 rows of 1-4 beams. These are the expected answers.

Then for `--seconds`, `--clients` concurrent clients (coroutines of one aiohttp session, a
connection each) each send the next request of a seeded list: a good request of the pool, or with
probability `--malformed` a malformed one (cut-off JSON, a prompt of numbers, top_p 1.5, a missing
input, beams 0). A good request answered 429 (server busy) is sent again after 100 ms, as a client
should; its answer counts once it comes. Beside them, once a second, one oversized generation
(beams 100,000 (the request that grew a server to 10.2 GB and got it killed), max_new_tokens
100,000, or 1,024 rows of 16 beams and 1,000 new tokens) must be refused with 400.

Printed (one JSON object): good answers per second (and the seconds per request of the SavedModel
called directly, its first calls of each shape compiling), answers by status, wrong answers (a good
answer that differs from the SavedModel's: must be 0), bad requests not refused with 400 and one
line, oversized requests not refused with 400, 429s retried, and the server's peak resident memory
(VmHWM of its process) against `--max-rss-mb`. The script exits 1 when any of those fails.

    python benchmarks/serve_load.py [SAVED_MODEL] [--seconds 45] [--clients 64] [--malformed 0.05]
                                    [--budget-bytes 4000000] [--max-rss-mb 2048] [--pool 48] [--seed 0]
"""

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import aiohttp
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the tokenizer's ops)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# two prompt lengths and three continuation lengths: the decode step compiles (XLA) once per shape
PROMPTS = ["ROMEO", "Enter", "O, be", "KING:", "JULIET: O", "First Cit", "What say?", "Now, sir,"]
NEW_TOKENS = [4, 8, 16]
SAMPLED = {"seed": 0, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "stop": [""]}


def sampled(prompt="O", new=8, **settings) -> dict:
    """A `generate` body of one row."""
    return {"instances": [{"prompt": prompt, "max_new_tokens": new, **SAMPLED, **settings}]}


def searched(prompt="O", new=8, beams=2, rows=1) -> dict:
    """A `beam_search` body of `rows` rows."""
    row = {"prompt": prompt, "max_new_tokens": new, "beams": beams, "length_penalty": 1.0, "stop": [""]}
    return {"signature_name": "beam_search", "instances": [row] * rows}


MALFORMED = [
    b'{"instances": [{"prompt": "x"',
    json.dumps(sampled(prompt=3)).encode(),
    json.dumps(sampled(top_p=1.5)).encode(),
    json.dumps({"signature_name": "beam_search", "instances": [{"prompt": "x"}]}).encode(),
    json.dumps(searched(beams=0)).encode(),
]
OVERSIZED = [searched(new=50, beams=100_000), sampled(new=100_000), searched(new=1000, beams=16, rows=1024)]


def tiny_language_model(folder: str) -> str:
    """The serving tests' language model (tests/test_serve.py's fixture), written into `folder`."""
    import keras

    from garden.config import TokenizerConfig
    from garden.data.tokenizers import build_tokenizer
    from garden.export.decoder import write_saved_model
    from garden.models.backbones.decoder import DecoderBackbone

    keras.utils.set_random_seed(0)
    decoder = DecoderBackbone(num_layers=1, num_heads=2, num_key_value_heads=1, hidden_dim=32, intermediate_dim=48)
    write_saved_model(decoder, build_tokenizer("decoder", TokenizerConfig()), folder, max_length=64)
    return folder


def good_pool(count: int, seed: int) -> list[dict]:
    """`count` seeded good predict bodies, generate and beam_search, every row with its own settings."""
    rng, pool = np.random.default_rng(seed), []
    for _ in range(count):
        rows = []
        beams = rng.random() < 0.3
        for _ in range(int(rng.integers(1, 3 if beams else 5))):
            row = {"prompt": str(rng.choice(PROMPTS)), "max_new_tokens": int(rng.choice(NEW_TOKENS)), "stop": [""]}
            if beams:
                row |= {"beams": int(rng.integers(1, 5)), "length_penalty": float(rng.choice([0.0, 1.0]))}
            else:
                greedy = rng.random() < 0.5
                row |= {
                    "seed": int(rng.integers(0, 1000)),
                    "temperature": 0.0 if greedy else float(rng.choice([0.7, 1.0])),
                    "top_k": int(rng.choice([0, 20])),
                    "top_p": float(rng.choice([1.0, 0.9])),
                    "repetition_penalty": float(rng.choice([1.0, 1.3])),
                }
            rows.append(row)
        pool.append({"signature_name": "beam_search" if beams else "generate", "instances": rows})
    return pool


def expected_texts(path: str, pool: list[dict]) -> list[list[str]]:
    """Each pool request's texts from the SavedModel's signature called directly, one request at a time."""
    signatures = tf.saved_model.load(path).signatures
    answers = []
    for body in pool:
        signature = signatures[body["signature_name"]]
        specs = signature.structured_input_signature[1]
        inputs = {
            name: tf.constant([row[name] for row in body["instances"]], spec.dtype) for name, spec in specs.items()
        }
        answers.append([t.decode("utf-8", "replace") for t in signature(**inputs)["text"].numpy()])
    return answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of process `pid`, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        return int(status.read().split("VmHWM:")[1].split()[0]) / 1024


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def serving(path: str, budget: int, log_path: str):
    """(URL, process) of `garden serve lm=path --max-generation-bytes budget` once /healthz answers
    (its output in `log_path`); stopped at the end."""
    port = free_port()
    command = [sys.executable, "-m", "garden.cli", "serve", f"lm={path}", "--port", str(port)]
    command += ["--max-generation-bytes", str(budget)]
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    with open(log_path, "w") as log, subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log) as process:
        try:
            while not answers(url + "/healthz"):
                if process.poll() is not None or time.monotonic() > deadline:
                    with open(log_path) as output:
                        raise SystemExit(f"garden serve did not start:\n{output.read()}")
                time.sleep(0.25)
            yield url, process
        finally:
            process.terminate()


def refused(status: int, body: bytes) -> bool:
    """Whether a reply is TF Serving's 400 with one line in {"error": ...}."""
    try:
        error = json.loads(body)["error"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return False
    return status == 400 and isinstance(error, str) and bool(error) and "\n" not in error


async def load(url, pool, expected, args) -> dict:
    """Counts of the clients' and the oversized sender's answers over `args.seconds`."""
    counts = collections.Counter()
    statuses = collections.Counter()
    rng = np.random.default_rng(args.seed + 1)
    bodies = [json.dumps(body).encode() for body in pool]
    end = time.perf_counter() + args.seconds
    predict = f"{url}/v1/models/lm:predict"
    connector = aiohttp.TCPConnector(limit=args.clients + 1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300)) as session:

        async def post(body: bytes) -> tuple[int, bytes]:
            async with session.post(predict, data=body, headers={"Content-Type": "application/json"}) as reply:
                statuses[reply.status] += 1
                return reply.status, await reply.read()

        async def client(draws) -> None:
            for bad, index in draws:
                if time.perf_counter() > end:
                    return
                if bad:
                    status, reply = await post(MALFORMED[index % len(MALFORMED)])
                    counts["malformed"] += 1
                    counts["malformed_not_refused"] += not refused(status, reply)
                    continue
                while (answer := await post(bodies[index]))[0] == 429:
                    counts["busy_retried"] += 1
                    await asyncio.sleep(0.1)
                status, reply = answer
                counts["good"] += 1
                if status != 200:
                    counts["good_failed"] += 1
                    print(f"good request {index}: {status} {reply[:300]!r}", file=sys.stderr)
                elif json.loads(reply)["predictions"] != expected[index]:
                    counts["wrong"] += 1
                    print(f"good request {index}: wrong: {reply[:300]!r}", file=sys.stderr)

        async def oversized() -> None:
            for n in range(args.seconds):
                await asyncio.sleep(max(0.0, end - args.seconds + n + 1 - time.perf_counter()))
                status, reply = await post(json.dumps(OVERSIZED[n % len(OVERSIZED)]).encode())
                counts["oversized"] += 1
                counts["oversized_not_refused"] += not refused(status, reply)

        draws = [
            zip(rng.random(100_000) < args.malformed, rng.integers(0, len(pool), 100_000)) for _ in range(args.clients)
        ]
        start = time.perf_counter()
        await asyncio.gather(oversized(), *(client(d) for d in draws))
        counts["seconds"] = time.perf_counter() - start
    return {"counts": counts, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model", nargs="?", help="a language model SavedModel (default: the tests' tiny one)")
    parser.add_argument("--seconds", type=int, default=45)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--malformed", type=float, default=0.05, help="the fraction of requests made malformed")
    parser.add_argument("--budget-bytes", type=int, default=4_000_000, help="the server's --max-generation-bytes")
    parser.add_argument("--max-rss-mb", type=float, default=2048, help="the bound on the server's peak memory")
    parser.add_argument("--pool", type=int, default=48, help="distinct good requests")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # stops the server too
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.abspath(args.saved_model or tiny_language_model(os.path.join(scratch, "lm")))
        pool, start = good_pool(args.pool, args.seed), time.perf_counter()
        expected = expected_texts(path, pool)
        bare = (time.perf_counter() - start) / len(pool)
        with serving(path, args.budget_bytes, os.path.join(scratch, "server.log")) as (url, process):
            result = asyncio.run(load(url, pool, expected, args))
            peak = peak_rss_mb(process.pid)
    counts = result["counts"]
    figures = {
        "saved_model": args.saved_model or "the tests' tiny language model",
        "cpu_cores": os.cpu_count(),
        "clients": args.clients,
        "seconds": round(counts["seconds"], 1),
        "good_per_second": round(counts["good"] / counts["seconds"], 1),
        "bare_seconds_per_request": round(bare, 3),  # the SavedModel called directly, first calls compiling
        "answers_by_status": dict(sorted(result["statuses"].items())),
        **{k: counts[k] for k in ("good", "wrong", "good_failed", "busy_retried", "malformed")},
        **{k: counts[k] for k in ("malformed_not_refused", "oversized", "oversized_not_refused")},
        "peak_rss_mb": round(peak, 1),
        "max_rss_mb": args.max_rss_mb,
    }
    print(json.dumps(figures), flush=True)
    failures = ("wrong", "good_failed", "malformed_not_refused", "oversized_not_refused")
    if any(counts[k] for k in failures) or peak > args.max_rss_mb or not counts["good"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

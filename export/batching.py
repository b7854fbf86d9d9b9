"""Concurrent requests for one signature (and one input shape) batched into one model call, up to
`max_batch_size` rows or `batch_timeout_ms` of waiting (TF Serving's batching). A generation joins
a batch only where the generation budget has room for what joining adds: every row of a batched
language model call is padded to the longest prompt, the widest search and the most new tokens."""

import asyncio
import functools
from collections.abc import Callable

import numpy as np

from garden.export.requests import Generation, GenerationBudget, Limits, RequestError, model_error


class Batcher:
    """One queue of (inputs, future, generation); a task drains it into batched calls of `run` on a
    worker thread. `on_call(requests, rows)` hears of each call."""

    def __init__(
        self,
        run: Callable[[dict], dict],
        limits: Limits,
        on_call: Callable[[int, int], None],
        budget: GenerationBudget,
    ):
        self.run, self.limits, self.on_call, self.budget = run, limits, on_call, budget
        self.closed = False
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self.drain())

    async def predict(self, inputs: dict, generation: Generation | None = None) -> dict:
        """The outputs for `inputs`, batched with other requests; a `generation`'s own bytes are the
        caller's to hold of the budget while it waits and runs."""
        future = asyncio.get_running_loop().create_future()
        if self.closed:  # found this version just before a newer one replaced it: answered alone
            await self.answer([(inputs, future, generation)])
        else:
            self.queue.put_nowait((inputs, future, generation))
        return await future

    def close(self):
        """Answers what is queued, then stops draining."""
        self.closed = True
        self.queue.put_nowait(None)

    async def drain(self):
        loop = asyncio.get_running_loop()
        held = None  # the request that found no room beside the last batch: the next one's first
        while (first := held or await self.queue.get()) is not None:
            batch, rows, held, padding = [first], _rows(first[0]), None, 0
            deadline = loop.time() + self.limits.batch_timeout_ms / 1000
            while rows < self.limits.max_batch_size and (wait := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(self.queue.get(), wait)
                except asyncio.TimeoutError:
                    break
                if item is None:
                    self.queue.put_nowait(None)  # stop after this batch
                    break
                more = _padding_bytes([*batch, item]) - padding
                if more and not self.budget.take(more):
                    held = item
                    break
                batch.append(item)
                rows, padding = rows + _rows(item[0]), padding + more
            try:
                await self.answer(batch)
            finally:
                self.budget.give(padding)

    async def answer(self, batch):
        """Runs `batch` in one call; when the model rejects it, runs each request alone, so one bad
        request (an undecodable image, say) fails only itself."""
        joined = {name: np.concatenate([item[0][name] for item in batch]) for name in batch[0][0]}
        self.on_call(len(batch), len(next(iter(joined.values()))))
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(None, self.run, joined)
        except Exception as error:  # TensorFlow's errors for data that fits the signature but not the model
            if len(batch) > 1:
                for item in batch:
                    await self.answer([item])
            else:
                batch[0][1].set_exception(RequestError(model_error(error)))
            return
        start = 0
        for inputs, future, _ in batch:
            count = _rows(inputs)
            future.set_result({k: v[start : start + count] for k, v in outputs.items()})
            start += count


def _rows(inputs):
    return len(next(iter(inputs.values())))


def _padding_bytes(batch) -> int:
    """What running `batch`'s generations in one call takes beyond running each alone (0 for other calls)."""
    generations = [item[2] for item in batch if item[2] is not None]
    if not generations:
        return 0
    return functools.reduce(Generation.joined, generations).bytes - sum(g.bytes for g in generations)

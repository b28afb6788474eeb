"""Host input pipeline: pair batches built ahead of the step by worker threads.

The batch of step ``i`` is a pure function of ``(seed, i)`` (its generator is
seeded from both), so batches can be built out of order by several workers, and a
resumed run sees exactly the batches it would have seen. NumPy releases the GIL
in the heavy parts of sampling (gathers, padding, crops), so worker threads keep
the step fed without the pickling cost of processes; ``bench/input_pipeline.py``
measures delivered against consumed pairs/s.
"""

from __future__ import annotations

import collections
import concurrent.futures

import numpy as np

from pimc_jax.data.pairs import PairSampler


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator that builds the batch of ``step``."""
    return np.random.default_rng([seed, step])


class PairBatches:
    """Iterator over pre-training batches for steps ``start_step + 1 … end_step``.

    Each item is the sampler's dict for one step (this process's share of the global
    batch). ``num_threads`` workers build up to ``prefetch`` batches ahead.
    """

    def __init__(
        self,
        sampler: PairSampler,
        *,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        end_step: int | None = None,
        num_threads: int = 2,
        prefetch: int = 4,
    ):
        self._sampler = sampler
        self._batch_size = batch_size
        self._seed = seed
        self._next_step = start_step + 1
        self._end_step = end_step
        self._prefetch = max(1, prefetch)
        self._executor = concurrent.futures.ThreadPoolExecutor(max(1, num_threads))
        self._pending: collections.deque = collections.deque()
        self._fill()

    def _build(self, step: int) -> dict[str, np.ndarray]:
        return self._sampler.sample_batch(self._batch_size, step_rng(self._seed, step))

    def _fill(self) -> None:
        while len(self._pending) < self._prefetch:
            step = self._next_step + len(self._pending)
            if self._end_step is not None and step > self._end_step:
                break
            self._pending.append(self._executor.submit(self._build, step))

    def __iter__(self) -> PairBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if not self._pending:
            raise StopIteration
        batch = self._pending.popleft().result()
        self._next_step += 1
        self._fill()
        return batch

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

"""Batch samplers of the training split: the positive:negative ratio sampler of seed 000 section
3.1 and a shuffling sampler, both resumable (batches depend only on ``(seed, epoch)``) and split
across processes."""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence

import torch
from torch.utils.data import Sampler


class RatioBatchSampler(Sampler[list[int]]):
    """Batches with a fixed number of positive images (seed 000 section 3.1: "forcing each batch to
    have the same positive-negative image ratio (around 1:7) as the whole dataset").

    Every batch holds exactly ``k`` positive and ``batch_size - k`` negative indices, in shuffled
    order, where ``k = round(batch_size * ratio)`` (half rounds up), raised to 1 when
    ``ratio > 0`` and lowered to ``batch_size - 1`` when ``ratio < 1`` and ``batch_size > 1``, so
    that neither kind disappears from training. Positives and negatives are each drawn from
    their own stream, a random permutation that is reshuffled whenever it runs out; the minority
    kind is therefore cycled, and may repeat within a batch when it has fewer than ``k``
    members. All batches are full.

    The batches of an epoch depend only on ``(seed, epoch)``; call :meth:`set_epoch` before each
    epoch. Under ``torch.distributed``, give every process the same arguments plus its
    ``rank`` and ``num_replicas``: the processes draw the same streams and each takes its own
    share of every global step, so every per-process batch still has exactly ``k`` positives.

    Args:
        has_positive: one flag per data-set item (see :func:`foreground_flags`).
        batch_size: images per batch.
        ratio: fraction of positive images per batch; ``None`` uses the data set's own fraction.
        seed: seed of the shuffling.
        drop_last: ``False`` gives ``ceil(N / (batch_size * num_replicas))`` batches per epoch
            (the last one filled by cycling), ``True`` gives ``N // (batch_size * num_replicas)``.
        num_batches: batches per epoch and process, overriding the count above.
        num_replicas: number of processes sharing the data set (distributed training).
        rank: this process's index in ``[0, num_replicas)``.

    Raises:
        ValueError: if ``has_positive`` is empty, ``batch_size < 1``, ``ratio`` is outside
            ``[0, 1]``, or the batches need a kind of image that the data set lacks.

    Example:
        >>> sampler = RatioBatchSampler([True, False, False, False, False, False, False, False], 4, seed=0)
        >>> [sum(i == 0 for i in batch) for batch in sampler]  # one positive in every batch
        [1, 1]
    """

    def __init__(
        self,
        has_positive: Sequence[bool],
        batch_size: int,
        ratio: float | None = None,
        *,
        seed: int = 0,
        drop_last: bool = False,
        num_batches: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        flags = [bool(f) for f in has_positive]
        if not flags:
            raise ValueError("`has_positive` must have at least one entry; got an empty sequence")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1; got {batch_size!r}")
        self.positives = [i for i, f in enumerate(flags) if f]
        self.negatives = [i for i, f in enumerate(flags) if not f]
        if ratio is None:
            ratio = len(self.positives) / len(flags)
        ratio = float(ratio)
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"`ratio` must be in [0, 1]; got {ratio}")
        k = math.floor(batch_size * ratio + 0.5)
        if ratio > 0:
            k = max(k, 1)
        if ratio < 1 and batch_size > 1:
            k = min(k, batch_size - 1)
        if k > 0 and not self.positives:
            raise ValueError(f"`ratio` must be 0 when no item is positive; got {ratio}")
        if k < batch_size and not self.negatives:
            raise ValueError(f"`ratio` must be 1 (or None) when every item is positive; got {ratio}")
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise ValueError(f"`num_replicas` must be an int >= 1; got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise ValueError(f"`rank` must be an int in [0, num_replicas={num_replicas}); got {rank!r}")
        if num_batches is None:
            step = batch_size * num_replicas
            num_batches = len(flags) // step if drop_last else math.ceil(len(flags) / step)
        elif isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 0:
            raise ValueError(f"`num_batches` must be an int >= 0; got {num_batches!r}")
        self.batch_size, self.ratio, self.num_positive = batch_size, ratio, k
        self.seed, self.drop_last, self.num_batches = int(seed), bool(drop_last), num_batches
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        positive = _cycle(self.positives, gen)
        negative = _cycle(self.negatives, gen)
        k = self.num_positive
        for _ in range(self.num_batches):
            for replica in range(self.num_replicas):  # every process draws all shares, keeps its own
                batch = [next(positive) for _ in range(k)] + [next(negative) for _ in range(self.batch_size - k)]
                order = torch.randperm(self.batch_size, generator=gen).tolist()
                if replica == self.rank:
                    mine = [batch[j] for j in order]
            yield mine


def _cycle(indices: list[int], gen: torch.Generator) -> Iterator[int]:
    """Endless stream of ``indices``, reshuffled on every pass."""
    if not indices:
        return
    while True:
        for j in torch.randperm(len(indices), generator=gen).tolist():
            yield indices[j]


class ShuffleBatchSampler(Sampler[List[int]]):
    """Shuffled batches whose order depends only on ``(seed, epoch)`` (resumable), split across processes.

    Every epoch draws a permutation from a generator seeded with ``(seed, epoch)``; each
    global step takes ``batch_size * num_replicas`` items and gives process ``rank`` its
    ``batch_size``. Incomplete steps are dropped, except when the data set is smaller than
    one step (then the one step cycles through the permutation).

    Args:
        n: data-set size.
        batch_size: items per batch and process.
        seed: seed of the shuffling.
        num_replicas: processes.
        rank: this process.
        num_batches: batches per epoch, overriding the count above (the permutation cycles).

    Example:
        >>> s = ShuffleBatchSampler(5, 2, seed=0)
        >>> len(s), sorted(i for b in s for i in b) == sorted(set(i for b in s for i in b))
        (2, True)
    """

    def __init__(self, n: int, batch_size: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 num_batches: Optional[int] = None) -> None:
        if n < 1:
            raise ValueError(f"`n` must be >= 1; got {n}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.num_replicas, self.rank = num_replicas, rank
        step = batch_size * num_replicas
        self.num_batches = num_batches if num_batches is not None else max(1, n // step)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[List[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order: List[int] = []
        step = self.batch_size * self.num_replicas
        for _ in range(self.num_batches):
            while len(order) < step:
                order.extend(torch.randperm(self.n, generator=gen).tolist())
            chunk, order = order[:step], order[step:]
            yield chunk[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

"""Samples → fragment batches, with the next batch prepared in a background thread."""

from __future__ import annotations

import queue
import threading

import numpy as np
import torch

from varinv.data.store import Split
from varinv.errors import DataError, VarinvError


def to_tensor(x: np.ndarray, scale: float) -> torch.Tensor:
    """Stored fragments → float32 model input."""
    t = torch.from_numpy(np.ascontiguousarray(x)).float()
    return t / scale if scale != 1.0 else t


def make_batch(split: Split, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """Rows ``idx`` of ``split`` as model input (stored values / ``split.scale``) and labels (N, L)."""
    idx = np.sort(idx)  # sorted fancy-indexing is much faster on memory maps
    content = np.asarray(split.content[idx], dtype=np.int64)
    style = np.asarray(split.style[idx], dtype=np.int64)
    if style.ndim == 1:  # per-sample labels: broadcast over the batch's fragments only
        style = np.repeat(style[:, None], content.shape[1], axis=1)
    return {"x": to_tensor(split.x[idx], split.scale), "content": torch.from_numpy(content),
            "style": torch.from_numpy(style)}


def shard(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Process ``rank``'s contiguous slice of a global batch, in sorted order (the order ``make_batch``
    stacks a whole batch in), so rows gathered over processes line up with the 1-process rows."""
    idx = np.sort(indices)
    per = len(idx) // world
    return idx[rank * per:(rank + 1) * per]


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The sample indices of training step ``step``: a pure function of (seed, step), so a resumed
    run draws exactly the batches an uninterrupted one would."""
    rng = np.random.default_rng([seed, step])
    return rng.choice(n, size=min(batch_size, n), replace=False)


class Prefetcher:
    """Yields batches for steps start..stop-1, preparing the next one while the current trains.

    With ``world`` > 1 processes, each yields its contiguous slice (``rank``) of the global batch.
    An exception in the loading thread is handed to the consumer and re-raised by ``next()`` (a
    VarinvError as it is, anything else as a DataError naming it); the consumer never waits forever:
    a dead loading thread is noticed within ``poll`` seconds. ``close()`` stops the thread.
    """

    poll = 0.5

    def __init__(
        self, split: Split, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1
    ):
        self.q: queue.Queue = queue.Queue(maxsize=2)
        self.split, self.bs, self.seed = split, batch_size, seed
        self.rank, self.world = rank, world
        self._stop = threading.Event()
        self._left = stop - start
        self.thread = threading.Thread(target=self._work, args=(start, stop), daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self.q.put(item, timeout=self.poll)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, start: int, stop: int) -> None:
        try:
            for step in range(start, stop):
                if self._stop.is_set():
                    return
                idx = batch_indices(len(self.split), self.bs, self.seed, step)
                if self.world > 1:
                    idx = shard(idx, self.rank, self.world)
                if not self._put(("batch", make_batch(self.split, idx))):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(("error", e))

    def __iter__(self):
        return self

    def __next__(self):
        if self._left <= 0:
            raise StopIteration
        while True:
            try:
                kind, item = self.q.get(timeout=self.poll)
                break
            except queue.Empty:
                if not self.thread.is_alive() and self.q.empty():
                    raise DataError("the batch-loading thread stopped without a batch or an error; "
                                    "rerun with --debug and report it") from None
        if kind == "error":
            self.close()
            if isinstance(item, VarinvError):
                raise item
            raise DataError(f"loading a training batch failed ({type(item).__name__}: {item}); "
                            "check the dataset files or regenerate them with `varinv data`") from item
        self._left -= 1
        return item

    def close(self) -> None:
        """Stop the loading thread (it exits within ``poll`` seconds)."""
        self._stop.set()


def iterate(split: Split, batch_size: int = 64):
    """Deterministic in-order batches over a whole split (evaluation)."""
    for start in range(0, len(split), batch_size):
        yield make_batch(split, np.arange(start, min(start + batch_size, len(split))))

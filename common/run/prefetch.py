"""Training batches sampled in a background thread and put on the devices ahead of the step.

The train loop owes updates by the train ratio and takes one batch per update from here,
so the accounting is unchanged; only when a batch is sampled moves: up to `depth` updates
earlier, from the replay as it was then (the DreamerV3 reference prefetches the same way).
Sampling and every replay write share `lock`, so the thread never reads a half-written
step. With a replay that does not change (offline training), the batches and their order
are exactly those of sampling in the loop: the sampler's RNG is called in the same order.
"""
import queue
import threading


class Prefetcher:
  """`get()` -> the next `put(*sample())`, computed `depth` batches ahead in a thread."""

  def __init__(self, sample, put, depth: int, lock: threading.Lock):
    if depth < 1:
      raise ValueError(f'run.prefetch={depth}: use 0 to sample in the loop, or >= 1.')
    self._sample, self._put, self._lock = sample, put, lock
    self._queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._work, name='prefetch', daemon=True)
    self._thread.start()

  def _work(self):
    while not self._stop.is_set():
      try:
        with self._lock:
          batch, where = self._sample()
        item = (self._put(batch), where, None)
      except BaseException as error:  # pylint: disable=broad-except
        item = (None, None, error)    # re-raised in the loop's thread by `get`
      while not self._stop.is_set():
        try:
          self._queue.put(item, timeout=0.1)
          break
        except queue.Full:
          continue
      if item[2] is not None:
        return

  def get(self):
    batch, where, error = self._queue.get()
    if error is not None:
      raise error
    return batch, where

  def close(self):
    self._stop.set()
    self._thread.join()

"""What both training loops share (`common/run/train_loop.py`, `common/run/device_loop.py`): the
train-ratio accounting, the non-finite guard, clocks, stop signals and the observation keys
that are only logged.

  * `TrainRatio`: DreamerV3's `run.train_ratio` replayed steps per agent step, counted
    exactly; the device loop keeps the same count in int32 (`device_loop._Rate`);
  * `guard_update` / `NonFiniteError`: the longest run of non-finite updates, kept on the
    device, and the error that stops a run after `run.max_nonfinite` of them;
  * `Timer`: wall-clock `run.log_every` / `report_every` / `save_every`;
  * `StopSignals`: SIGINT/SIGTERM caught so a loop can save and stop.
"""
import fractions
import signal
import time

import jax.numpy as jnp


class NonFiniteError(SystemExit):
  """Raised (exit status 1, one message) when too many updates in a row were non-finite."""


class TrainRatio:
  """Updates owed after `step` agent steps: `pretrain + floor((step - start) * ratio / (B * T))`
  once `step >= start`, none before.

  Exact (rational arithmetic), so fractional credit carries over between calls.
  """

  def __init__(self, ratio, batch_steps, start=0, updates=0, pretrain=0):
    if ratio < 0:
      raise ValueError(f'run.train_ratio={ratio}: must be >= 0.')
    if batch_steps < 1:
      raise ValueError(f'batch_size * batch_length = {batch_steps}: must be positive.')
    self._rate = fractions.Fraction(ratio) / batch_steps
    self.start = start
    self.pretrain = pretrain
    self.updates = updates  # updates already done, pretrain included

  def due(self, step):
    """Number of updates to run now (and counts them as done)."""
    if step < self.start:
      return 0
    owed = self.pretrain + int((step - self.start) * self._rate)
    count = max(0, owed - self.updates)
    self.updates += count
    return count


def strip_log(obs):
  return {key: value for key, value in obs.items() if not key.startswith('log/')}


def guard_update(guard, nonfinite, step):
  current, longest, last_finite = guard
  bad = jnp.asarray(nonfinite) > 0
  current = jnp.where(bad, current + 1, 0).astype(jnp.int32)
  longest = jnp.maximum(longest, current)
  last_finite = jnp.where(bad, last_finite, jnp.int32(step))
  return current, longest, last_finite


class StopSignals:
  """Catches SIGINT/SIGTERM while installed: `received` holds the signal, so a loop can
  finish its step, save and stop (both training loops)."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def install(self):
    def handler(signum, frame):
      del frame
      self.received = signum
    for signum in (signal.SIGINT, signal.SIGTERM):
      try:
        self._previous[signum] = signal.signal(signum, handler)
      except ValueError:  # not the main thread
        pass

  def restore(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}


class Timer:
  def __init__(self, every):
    self.every = every
    self.last = time.time()

  def __call__(self):
    if self.every <= 0:
      return False
    now = time.time()
    if now - self.last >= self.every:
      self.last = now
      return True
    return False

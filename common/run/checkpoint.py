"""Checkpoints of the whole training state with orbax-checkpoint.

A checkpoint holds one pytree (agent parameters, optimizer state, slow
targets, normaliser states, RNG key: everything in the agent's state) and a
JSON dict of metadata (step counters, replay position). Orbax writes each step
into a temporary directory and renames it when complete, so a process killed
mid-save leaves the previous checkpoints usable; the half-written directory is
ignored. The newest `keep` checkpoints are kept.

Layout: `directory/<step>/state` (the pytree) and `directory/<step>/meta`; the device loop
adds `directory/<step>/loop` (its replay, envs and counters), which the Python loop ignores,
so it can evaluate or continue from the agent of a one-seed device-loop run.
"""
import logging as _pylogging
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

_log = _pylogging.getLogger(__name__)


def _to_numpy_meta(meta):
  """JSON-safe copy of `meta` (NumPy scalars become Python numbers)."""
  def convert(value):
    if isinstance(value, dict):
      return {str(k): convert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return [convert(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
      return np.asarray(value).tolist()
    return value
  return convert(dict(meta))


def resolve(path):
  """`(checkpoints_directory, step or None)` for a checkpoints directory or one step's directory."""
  path = os.path.abspath(os.fspath(path))
  name = os.path.basename(path.rstrip('/'))
  if re.fullmatch(r'\d+', name) and os.path.isdir(os.path.join(path, 'state')):
    return os.path.dirname(path), int(name)
  if os.path.isdir(os.path.join(path, 'checkpoints')) and not _has_steps(path):
    return os.path.join(path, 'checkpoints'), None
  return path, None


def _has_steps(path):
  return any(re.fullmatch(r'\d+', n) for n in os.listdir(path))


def list_steps(directory):
  """Steps of the checkpoints in `directory` (sorted; [] if there are none or no directory),
  read without opening a checkpoint manager, which would create the directory."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory)
                if re.fullmatch(r'\d+', n) and os.path.isdir(os.path.join(directory, n)))


def _silence_reads_left_behind():
  """After a failed restore, reads that orbax had started still complete, and their callbacks
  post to the event loop that orbax closed when it raised: each one would print a `RuntimeError:
  Event loop is closed` traceback through `sys.unraisablehook`, hundreds for one bad
  checkpoint. This drops exactly those; every other unraisable exception is reported as before."""
  previous = sys.unraisablehook
  if getattr(previous, 'drops_closed_loop_callbacks', False):
    return

  def hook(unraisable):
    value = unraisable.exc_value
    if isinstance(value, RuntimeError) and str(value) == 'Event loop is closed':
      return
    previous(unraisable)

  hook.drops_closed_loop_callbacks = True
  sys.unraisablehook = hook


class Checkpointer:
  """Saves and restores `(state pytree, meta dict)` per step, keeping the newest `keep`.

  Args:
    directory: the checkpoints directory (created on the first save).
    keep: number of newest checkpoints to keep (older ones are deleted).
  """

  def __init__(self, directory, keep=3):
    if keep < 1:
      raise ValueError(f'keep={keep}: must keep at least one checkpoint (run.keep_checkpoints).')
    self.directory = os.path.abspath(os.fspath(directory))
    self.keep = keep
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step, state, meta=None, loop=None):
    """Writes `state` (any pytree of arrays), `meta` (a JSON-able dict) and optionally `loop`
    (a pytree of arrays) as `step`."""
    step = int(step)
    meta = _to_numpy_meta(meta or {})
    meta.setdefault('step', step)
    if step in self._manager.all_steps():
      self._manager.delete(step)  # re-saving a step (e.g. the final save) replaces it
    items = dict(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    if loop is not None:
      items['loop'] = ocp.args.StandardSave(loop)
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._manager.wait_until_finished()

  def steps(self):
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self):
    """The newest complete checkpoint's step, or None."""
    steps = self.steps()
    return steps[-1] if steps else None

  def read_meta(self, step=None) -> dict:
    """The metadata of `step` (default: the newest), or {} where it cannot be read (`restore`
    then says why, or falls back to an older checkpoint)."""
    steps = self.steps()
    step = steps[-1] if step is None and steps else step
    if step is None:
      return {}
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception:  # pylint: disable=broad-except
      _silence_reads_left_behind()
      return {}
    return dict(restored['meta'] or {})

  def restore(self, target, step=None, loop=None):
    """Restores `(state, meta)` with the structure, dtypes and shapes of `target`; with a
    `loop` target, `(state, meta, loop)`.

    With `step=None` the newest checkpoint is used; if it is unreadable
    (corrupt, half-copied), the next older one is used with a warning.
    An explicitly requested `step` that is unreadable raises, naming it.
    """
    steps = self.steps()
    if not steps:
      raise FileNotFoundError(f'No checkpoint in {self.directory}; train first or pass '
                              f'run.from_checkpoint pointing at a checkpoints directory.')
    if step is not None:
      if step not in steps:
        raise FileNotFoundError(f'No checkpoint for step {step} in {self.directory} '
                                f'(available: {steps}).')
      return self._restore(target, step, loop)
    errors = []
    for candidate in reversed(steps):
      try:
        result = self._restore(target, candidate, loop)
      except ValueError as error:
        errors.append(str(error))
        _log.warning('%s Falling back to the previous checkpoint.', error)
        continue
      if errors:
        _log.warning('Restored checkpoint %d after skipping unreadable newer ones.', candidate)
      return result
    raise ValueError(f'Every checkpoint in {self.directory} is unreadable: ' + ' | '.join(errors))

  def _restore(self, target, step, loop=None):
    path = os.path.join(self.directory, str(step))

    def abstract(tree):
      return jax.tree.map(
          lambda x: ocp.utils.to_shape_dtype_struct(x) if hasattr(x, 'shape') else x, tree)
    items = dict(state=ocp.args.StandardRestore(abstract(target)), meta=ocp.args.JsonRestore())
    if loop is not None:
      items['loop'] = ocp.args.StandardRestore(abstract(loop))
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as error:  # orbax raises many kinds; all mean "unreadable"
      _silence_reads_left_behind()
      raise ValueError(f'Checkpoint {path} is unreadable or does not match the agent state '
                       f'({type(error).__name__}: {str(error)[:300]}).') from error
    state, meta = restored['state'], restored['meta']
    problems = []
    jax.tree.map(lambda t, r: problems.append((t, r)) if (
        hasattr(t, 'shape') and (np.shape(t) != np.shape(r))) else None, target, state)
    if problems:
      raise ValueError(f'Checkpoint {path}: array shapes differ from the agent state '
                       f'({problems[0][0].shape} vs {problems[0][1].shape}); was it written '
                       f'with another config?')
    # orbax hands back arrays committed to a device, while jitted steps return uncommitted
    # ones: left as is, the first update after a resume would compile a second program.
    state = jax.tree.map(_placed_like, target, state)
    if loop is not None:
      return state, dict(meta or {}), jax.tree.map(_placed_like, loop, restored['loop'])
    return state, dict(meta or {})

  def close(self):
    self._manager.close()


def _placed_like(target, restored):
  """`restored` with the dtype and placement (committed or not) of `target`."""
  if not isinstance(target, jax.Array) or getattr(target, 'committed', True):
    return restored
  return jnp.asarray(np.asarray(restored), dtype=target.dtype)

"""How much memory a train step needs, known before compiling it, and how much a device has.

`peak_bytes(fn, *args)` traces `fn` to a jaxpr (seconds, no XLA compile) and walks it in
program order: every value is allocated where it is computed and freed after its last use
(inputs too: the loop donates the train state), and a call or loop (`pjit`, `scan`,
`while`, `cond`, custom derivatives) adds the peak of its body's own temporaries. The
result is the peak of live bytes of the unfused program. XLA fuses elementwise chains and
reuses buffers, so its real peak is lower; the estimate is meant to reject what cannot
fit, not to pack a device to the byte (tests/common/run/test_memory.py compares the two).
"""
import os

import jax
import numpy as np

try:  # jax >= 0.4.36 exports the jaxpr types here
  from jax.extend import core as _core
  _Var, _Jaxpr, _ClosedJaxpr = _core.Var, _core.Jaxpr, _core.ClosedJaxpr
except (ImportError, AttributeError):  # pragma: no cover
  from jax import core as _core  # pylint: disable=g-import-not-at-top
  _Var, _Jaxpr, _ClosedJaxpr = _core.Var, _core.Jaxpr, _core.ClosedJaxpr


def _nbytes(var) -> int:
  aval = getattr(var, 'aval', None)
  shape, dtype = getattr(aval, 'shape', None), getattr(aval, 'dtype', None)
  if shape is None or dtype is None:
    return 0
  try:
    itemsize = np.dtype(dtype).itemsize
  except TypeError:  # extended dtypes (PRNG keys): count their underlying words
    itemsize = 8
  return int(np.prod(shape, dtype=np.int64)) * itemsize


def _subjaxprs(params):
  for value in params.values():
    values = value if isinstance(value, (tuple, list)) else (value,)
    for item in values:
      if isinstance(item, _ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, _Jaxpr):
        yield item


def _temporaries(jaxpr, inputs=()) -> int:
  """Peak bytes a jaxpr allocates beyond its inputs (its outputs included); `inputs` are
  counted as live and freed after their last use (donated)."""
  last_use = {}
  for index, eqn in enumerate(jaxpr.eqns):
    for var in eqn.invars:
      if isinstance(var, _Var):
        last_use[var] = index
  kept = {var for var in jaxpr.outvars if isinstance(var, _Var)}
  owned = {var for var in inputs if isinstance(var, _Var)}
  live = peak = sum(_nbytes(var) for var in owned)
  for index, eqn in enumerate(jaxpr.eqns):
    out = sum(_nbytes(var) for var in eqn.outvars)
    inner = max((_temporaries(sub) for sub in _subjaxprs(eqn.params)), default=0)
    peak = max(peak, live + out + max(0, inner - out))
    live += out
    owned.update(eqn.outvars)
    for var in eqn.invars:
      if isinstance(var, _Var) and last_use.get(var) == index and var not in kept:
        if var in owned:
          live -= _nbytes(var)
          owned.discard(var)
  return peak


def peak_bytes(fn, *args) -> int:
  """Estimated peak device bytes of `jax.jit(fn)(*args)` (args may be ShapeDtypeStructs)."""
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  return _temporaries(jaxpr, inputs=list(jaxpr.constvars) + list(jaxpr.invars))


def device_bytes(device=None) -> int:
  """Memory one device can hold: the allocator's limit on GPU/TPU, physical RAM on CPU."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def gib(count: int) -> str:
  return f'{count / 2 ** 30:.1f} GiB'


def train_batch_spec(agent, obs_space: dict, act_space, batch_size: int, length: int) -> dict:
  """Shapes of the replay batches `agent.train` takes: the observations, `action`, and the
  policy's replay entries (V3 replay context), over `length` steps (context included)."""
  def spec(shape, dtype):
    return jax.ShapeDtypeStruct((batch_size, length) + tuple(shape), np.dtype(dtype))
  batch = {key: spec(space.shape, space.dtype) for key, space in obs_space.items()}
  batch['action'] = spec(act_space.shape, act_space.dtype)
  if agent.policy_entries:
    entries = jax.eval_shape(lambda: agent.policy_entries(agent.init_policy_carry(1)))
    batch.update({key: spec(value.shape[1:], value.dtype) for key, value in entries.items()})
  return batch


def train_step_bytes(agent, obs_space: dict, act_space, batch_size: int, length: int) -> int:
  """Estimated peak bytes of one `agent.train` step (state donated), from its jaxpr."""
  state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
  batch = train_batch_spec(agent, obs_space, act_space, batch_size, length)
  return peak_bytes(agent.train, state, batch)

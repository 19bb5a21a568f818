"""`BatchEnv`: N envs behind one `step(actions [N, ...]) -> obs [N, ...]`.

Modes: 'process' (one worker process per env, `forkserver` or `spawn`
context), 'thread' (a thread per env; enough where the simulator releases the
GIL), 'none' (stepped in turn in this process; for debugging).

Process mode moves no observation through a pipe: the batch's observations
(one array [N, *space.shape] per key of `obs_space`) and actions live in shared
memory (`multiprocessing.shared_memory`), allocated once from the spaces the
first worker reports. A step writes the checked actions, writes one byte to every
worker's pipe, and waits for every one-byte answer (the workers step
concurrently); each worker writes its row of every observation key in place.
Actions are checked once per batch, vectorised (the per-env check gives the
message when a batch is bad). An env that returns keys or shapes other than its
`obs_space` raises a ValueError naming them (in every mode).

Fault tolerance: when a worker dies, raises, or does not answer within
`timeout` seconds, it is restarted with a fresh env, a warning is logged, and
that env's step returns its last observation with reward 0, is_last=True and
is_terminal=False (the episode is cut, not ended); its next step is the new
env's first (is_first). After `max_restarts` consecutive failures of one
worker without a successful step, a RuntimeError is raised instead.
"""
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import traceback
from multiprocessing import shared_memory

import numpy as np

from common.envs.spaces import check_actions

log = logging.getLogger(__name__)
MODES = ('process', 'thread', 'none')
CONTEXTS = ('forkserver', 'spawn')

# One-byte messages between BatchEnv and a process worker.
_STEP, _CLOSE, _OK, _ERROR, _SPEC = b's', b'c', b'k', b'E', b'S'


class WorkerError(Exception):
  """A worker crashed or raised; the message holds the cause."""


class SpecError(ValueError):
  """An env returned observations that do not match its `obs_space`."""


def check_action_batch(space, actions, num: int, name: str = 'action') -> np.ndarray:
  """`check_actions` in a few vectorised NumPy operations; same result and errors.

  actions: [num, *space.shape]. A batch the vectorised test does not accept goes
  through the per-env `check_actions`, which raises the message naming the env.
  """
  value = np.asarray(actions)
  if value.shape == (num,) + space.shape and value.dtype.kind in 'fiu':
    if space.discrete:
      integral = value.dtype.kind in 'iu' or bool(np.all(value == np.round(value)))
      if integral and np.all(value >= space.low) and np.all(value <= space.high):
        return value.astype(space.dtype)
    else:
      tolerance = 1e-5
      if (np.all(np.isfinite(value)) and np.all(value >= space.low - tolerance)
          and np.all(value <= space.high + tolerance)):
        return np.clip(value, space.low, space.high).astype(space.dtype)
  return check_actions(space, value, num, name)


def write_obs(obs: dict, buffers: dict, index: int):
  """Writes one env's `obs` into row `index` of `buffers` ({key: [N, ...]})."""
  if len(obs) != len(buffers) or any(key not in buffers for key in obs):
    raise SpecError(f'the env returned keys {sorted(obs)} but its obs_space has '
                    f'{sorted(buffers)}; make obs_space list every key step() returns.')
  for key, buffer in buffers.items():
    value = obs[key]
    if np.shape(value) != buffer.shape[1:]:
      raise SpecError(f"the env returned '{key}' of shape {np.shape(value)} but its obs_space "
                      f'says {buffer.shape[1:]}; fix the env or its obs_space.')
    buffer[index] = value


class _SharedArrays:
  """Arrays {key: [num, *shape]} in shared memory; picklable as a spec to attach by name."""

  def __init__(self, specs, create=True):
    # specs: {key: (shm name or None, dtype str, shape)}.
    self._memories, self.arrays, self.specs = [], {}, {}
    try:
      for key, (name, dtype, shape) in specs.items():
        size = max(1, int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
        memory = (shared_memory.SharedMemory(create=True, size=size) if create else
                  shared_memory.SharedMemory(name=name))
        self._memories.append(memory)
        self.arrays[key] = np.ndarray(shape, dtype, buffer=memory.buf)
        self.specs[key] = (memory.name, dtype, shape)
    except Exception:
      self.release(unlink=create)
      raise

  @classmethod
  def allocate(cls, spaces: dict, num: int):
    return cls({key: (None, space.dtype.str, (num,) + space.shape)
                for key, space in spaces.items()})

  def release(self, unlink=False):
    self.arrays = {}  # Views must go before the mappings close.
    for memory in self._memories:
      try:
        memory.close()
        if unlink:
          memory.unlink()
      except (OSError, BufferError):
        pass
    self._memories = []


def _worker_main(conn, constructor, index):
  # Stopping is the parent's job: a SIGINT or SIGTERM sent to the whole process group (Ctrl-C,
  # `timeout`, Slurm) must not kill the workers under the step the parent finishes before it
  # saves; the parent closes them, and a parent that dies ends their reads with EOF.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  try:
    env = constructor()
    conn.send(('ok', (env.obs_space, env.act_space)))
  except Exception:  # pylint: disable=broad-except
    conn.send(('error', traceback.format_exc()))
    return
  shared = None
  try:
    obs_specs, act_specs = conn.recv()
    fd = conn.fileno()  # Per step: one raw byte each way (a message follows errors only).
    try:
      shared = _SharedArrays(obs_specs, create=False), _SharedArrays(act_specs, create=False)
    except Exception:  # pylint: disable=broad-except
      os.write(fd, _ERROR)
      conn.send_bytes(f'attaching shared memory failed:\n{traceback.format_exc()}'.encode())
      return
    buffers, actions = shared[0].arrays, shared[1].arrays['action']
    os.write(fd, _OK)
    while True:
      command = os.read(fd, 1)
      if command in (_CLOSE, b''):
        break
      try:
        write_obs(env.step(actions[index].copy()), buffers, index)
        os.write(fd, _OK)
      except SpecError as error:
        os.write(fd, _SPEC)
        conn.send_bytes(str(error).encode())
      except Exception:  # pylint: disable=broad-except
        os.write(fd, _ERROR)
        conn.send_bytes(traceback.format_exc().encode())
  except (EOFError, OSError, KeyboardInterrupt):
    pass  # The parent went away or was interrupted; just exit.
  finally:
    try:
      env.close()
    finally:
      if shared:
        buffers = actions = None
        for part in shared:
          part.release()
      conn.close()


class _ProcessWorker:

  def __init__(self, constructor, context, timeout, index):
    self._timeout = timeout
    self._conn, child = context.Pipe()
    self._fd = self._conn.fileno()
    self.process = context.Process(target=_worker_main, args=(child, constructor, index),
                                   daemon=True)
    self.process.start()
    child.close()

  def _poll(self):
    try:
      if not self._conn.poll(self._timeout):
        raise WorkerError(f'no answer within {self._timeout} s')
    except (EOFError, OSError) as error:
      raise WorkerError(f'process died (exit code {self.process.exitcode}): {error!r}') from None

  def _died(self, error):
    self.process.join(0.1)
    return WorkerError(f'process died (exit code {self.process.exitcode}): {error!r}')

  def spaces(self):
    self._poll()
    try:
      status, payload = self._conn.recv()
    except (EOFError, OSError) as error:
      raise self._died(error) from None
    if status == 'error':
      raise WorkerError(payload)
    return payload

  def bind(self, obs, actions):
    try:
      self._conn.send((obs.specs, actions.specs))
    except (BrokenPipeError, OSError) as error:
      raise self._died(error) from None
    self.result()

  def submit(self):
    try:
      os.write(self._fd, _STEP)
    except OSError:
      pass  # Reported by result().

  def result(self):
    self._poll()
    try:
      answer = os.read(self._fd, 1)
      if answer == _OK:
        return
      if not answer:
        raise EOFError('the pipe was closed')
      message = self._conn.recv_bytes().decode()
    except (EOFError, OSError) as error:
      raise self._died(error) from None
    raise (SpecError if answer == _SPEC else WorkerError)(message)

  def close(self, kill=False):
    if not kill and self.process.is_alive():
      try:
        os.write(self._fd, _CLOSE)
        self.process.join(5)
      except (BrokenPipeError, OSError):
        pass
    if self.process.is_alive():
      self.process.kill()
    self.process.join(5)
    self._conn.close()


class _LocalWorker:
  """Runs the env in this process, either in a thread pool or inline."""

  def __init__(self, constructor, pool, index):
    self._pool = pool
    self._index = index
    self._pending = None
    self._buffers = self._actions = None
    try:
      self._env = constructor()
    except Exception:  # pylint: disable=broad-except
      raise WorkerError(traceback.format_exc()) from None

  def spaces(self):
    return self._env.obs_space, self._env.act_space

  def bind(self, obs, actions):
    self._buffers, self._actions = obs.arrays, actions.arrays['action']

  def submit(self):
    action = self._actions[self._index].copy()
    if self._pool:
      self._pending = self._pool.submit(self._env.step, action)
    else:
      self._pending = action

  def result(self):
    try:
      obs = self._pending.result() if self._pool else self._env.step(self._pending)
    except Exception:  # pylint: disable=broad-except
      raise WorkerError(traceback.format_exc()) from None
    write_obs(obs, self._buffers, self._index)

  def close(self, kill=False):
    try:
      self._env.close()
    except Exception:  # pylint: disable=broad-except
      if not kill:
        raise


class _LocalArrays:
  """Plain NumPy arrays with the `_SharedArrays` interface (thread and none modes)."""

  def __init__(self, spaces: dict, num: int):
    self.arrays = {key: np.zeros((num,) + space.shape, space.dtype)
                   for key, space in spaces.items()}

  def release(self, unlink=False):
    self.arrays = {}


class BatchEnv:
  """N envs from `constructors` (picklable zero-argument callables for 'process').

  obs_space / act_space are one env's spaces (no batch axis); `step` takes and
  returns arrays with a leading [N] axis. Use as a context manager or `close()`.
  `context`: 'forkserver' (default: workers start about as fast as with spawn and
  the parent's size does not slow them) or 'spawn'.
  """

  def __init__(self, constructors, mode: str = 'process', context: str = 'forkserver',
               timeout: float = 600.0, max_restarts: int = 3):
    if mode not in MODES:
      raise ValueError(f"BatchEnv mode '{mode}' must be one of {MODES} (EnvConfig.parallel).")
    if mode == 'process' and context not in CONTEXTS:
      raise ValueError(f"BatchEnv context '{context}' must be one of {CONTEXTS}.")
    if not constructors:
      raise ValueError('BatchEnv needs at least one env constructor (num >= 1).')
    self._constructors = list(constructors)
    self._mode = mode
    self._timeout = timeout
    self._max_restarts = max_restarts
    self._context = multiprocessing.get_context(context) if mode == 'process' else None
    self._pool = (concurrent.futures.ThreadPoolExecutor(len(constructors))
                  if mode == 'thread' else None)
    self._obs = self._actions = None
    self._workers = []
    self._closed = False
    for index in range(len(self._constructors)):
      try:
        self._workers.append(self._start(index))
      except WorkerError as error:
        self.close()
        raise RuntimeError(f'Env worker {index} failed to start:\n{error}') from None
    spaces = [self._first_spaces(index) for index in range(len(self._workers))]
    self.obs_space, self.act_space = spaces[0]
    num = len(self._workers)
    arrays = _SharedArrays.allocate if mode == 'process' else _LocalArrays
    self._obs = arrays(self.obs_space, num)
    self._actions = arrays({'action': self.act_space}, num)
    for index, worker in enumerate(self._workers):
      try:
        worker.bind(self._obs, self._actions)
      except WorkerError as error:
        self.close()
        raise RuntimeError(f'Env worker {index} failed to start:\n{error}') from None
    self._last = None          # The previous batch returned (a private copy).
    self._has_last = [False] * num  # Whether row i of it is the current env's last step.
    self._failures = [0] * num
    self.restarts = 0  # Number of worker restarts so far (for logging).

  def _start(self, index):
    if self._mode == 'process':
      return _ProcessWorker(self._constructors[index], self._context, self._timeout, index)
    return _LocalWorker(self._constructors[index], self._pool, index)

  def _first_spaces(self, index):
    try:
      return self._workers[index].spaces()
    except WorkerError as error:
      self.close()
      raise RuntimeError(f'Env worker {index} failed to start:\n{error}') from None

  @property
  def num(self) -> int:
    return len(self._workers)

  def __len__(self):
    return len(self._workers)

  @property
  def processes(self) -> list:
    """The worker processes ('process' mode), e.g. to monitor or kill them."""
    return [getattr(worker, 'process', None) for worker in self._workers]

  def step(self, actions) -> dict:
    """actions: [N, *act_space.shape] -> obs dict of [N, ...] arrays."""
    if self._obs is None or not self._obs.arrays:
      raise RuntimeError('BatchEnv.step after close(); make a new BatchEnv.')
    self._actions.arrays['action'][...] = check_action_batch(self.act_space, actions, self.num)
    for worker in self._workers:
      worker.submit()
    cuts = {}
    for index in range(self.num):
      cut = self._collect(index)
      if cut is not None:
        cuts[index] = cut
    out = {key: array.copy() for key, array in self._obs.arrays.items()}
    for index, cut in cuts.items():
      for key, value in cut.items():
        out[key][index] = value
    self._last = {key: value.copy() for key, value in out.items()}
    return out

  def _collect(self, index):
    """Waits for worker `index`; returns a cut observation for its row, or None."""
    while True:
      try:
        self._workers[index].result()
        if not self._obs.arrays['is_first'][index]:  # A reset alone does not prove health.
          self._failures[index] = 0
        self._has_last[index] = True
        return None
      except SpecError as error:
        self.close()
        raise ValueError(f'Env worker {index}: {error}') from None
      except WorkerError as error:
        cut = self._restart(index, error)
        if cut is not None:
          return cut
        # The crashed env had no episode in progress: step the new env (its reset).
        self._actions.arrays['action'][index] = 0
        self._workers[index].submit()

  def _restart(self, index, error):
    """Restarts worker `index`; returns the cut observation, or None if nothing to cut."""
    self._failures[index] += 1
    if self._failures[index] > self._max_restarts:
      self.close()
      raise RuntimeError(f'Env worker {index} failed {self._failures[index]} times in a row; '
                         f'last error:\n{error}')
    log.warning('Env worker %d crashed; restarting it and ending its episode as cut. Cause: %s',
                index, str(error).strip().splitlines()[-1] if str(error).strip() else repr(error))
    self.restarts += 1
    try:
      self._workers[index].close(kill=True)
    except Exception:  # pylint: disable=broad-except
      pass
    while True:
      try:
        self._workers[index] = self._start(index)
        self._workers[index].spaces()
        self._workers[index].bind(self._obs, self._actions)
        break
      except WorkerError as start_error:
        self._failures[index] += 1
        if self._failures[index] > self._max_restarts:
          self.close()
          raise RuntimeError(f'Env worker {index} could not be restarted:\n{start_error}') from None
    had_last, self._has_last[index] = self._has_last[index], False
    if not had_last or self._last is None or self._last['is_last'][index]:
      return None
    cut = {key: value[index].copy() for key, value in self._last.items()}
    cut['reward'] = np.zeros_like(cut['reward'])
    cut['is_first'] = np.zeros_like(cut['is_first'])
    cut['is_last'] = np.ones_like(cut['is_last'])
    cut['is_terminal'] = np.zeros_like(cut['is_terminal'])
    return cut

  def close(self):
    if getattr(self, '_closed', True):
      return
    self._closed = True
    for worker in self._workers:
      try:
        worker.close()
      except Exception:  # pylint: disable=broad-except
        pass
    for arrays in (getattr(self, '_obs', None), getattr(self, '_actions', None)):
      if arrays is not None:
        arrays.release(unlink=True)
    if getattr(self, '_pool', None):
      self._pool.shutdown(wait=False)

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass

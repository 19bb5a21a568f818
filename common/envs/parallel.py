"""`BatchEnv`: N envs behind one `step(actions [N, ...]) -> obs [N, ...]`.

Modes: 'process' (one worker process per env, `spawn` or `forkserver`
context; forkserver is the default: it starts workers faster, see the envs
report), 'thread' (a thread per env; enough where the simulator releases the
GIL), 'none' (stepped in turn in this process; for debugging).

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
import traceback

import numpy as np

from common.envs.spaces import check_actions

log = logging.getLogger(__name__)
MODES = ('process', 'thread', 'none')


class WorkerError(Exception):
  """A worker crashed or raised; the message holds the cause."""


def _worker_main(conn, constructor):
  try:
    env = constructor()
    conn.send(('ok', (env.obs_space, env.act_space)))
  except Exception:  # pylint: disable=broad-except
    conn.send(('error', traceback.format_exc()))
    return
  while True:
    try:
      command, payload = conn.recv()
    except (EOFError, KeyboardInterrupt):
      break
    if command == 'close':
      try:
        env.close()
      finally:
        conn.close()
      break
    try:
      conn.send(('ok', env.step(payload)))
    except Exception:  # pylint: disable=broad-except
      conn.send(('error', traceback.format_exc()))


class _ProcessWorker:

  def __init__(self, constructor, context, timeout):
    self._timeout = timeout
    self._conn, child = context.Pipe()
    self.process = context.Process(target=_worker_main, args=(child, constructor), daemon=True)
    self.process.start()
    child.close()

  def _receive(self):
    try:
      if not self._conn.poll(self._timeout):
        raise WorkerError(f'no answer within {self._timeout} s')
      status, payload = self._conn.recv()
    except (EOFError, OSError) as error:
      raise WorkerError(f'process died (exit code {self.process.exitcode}): {error!r}') from None
    if status == 'error':
      raise WorkerError(payload)
    return payload

  def spaces(self):
    return self._receive()

  def submit(self, action):
    try:
      self._conn.send(('step', action))
    except (BrokenPipeError, OSError):
      pass  # Reported by result().

  def result(self):
    return self._receive()

  def close(self, kill=False):
    if not kill and self.process.is_alive():
      try:
        self._conn.send(('close', None))
        self.process.join(5)
      except (BrokenPipeError, OSError):
        pass
    if self.process.is_alive():
      self.process.kill()
    self.process.join(5)
    self._conn.close()


class _LocalWorker:
  """Runs the env in this process, either in a thread pool or inline."""

  def __init__(self, constructor, pool):
    self._pool = pool
    self._pending = None
    try:
      self._env = constructor()
    except Exception:  # pylint: disable=broad-except
      raise WorkerError(traceback.format_exc()) from None

  def spaces(self):
    return self._env.obs_space, self._env.act_space

  def submit(self, action):
    if self._pool:
      self._pending = self._pool.submit(self._env.step, action)
    else:
      self._pending = action

  def result(self):
    try:
      if self._pool:
        return self._pending.result()
      return self._env.step(self._pending)
    except Exception:  # pylint: disable=broad-except
      raise WorkerError(traceback.format_exc()) from None

  def close(self, kill=False):
    try:
      self._env.close()
    except Exception:  # pylint: disable=broad-except
      if not kill:
        raise


class BatchEnv:
  """N envs from `constructors` (picklable zero-argument callables for 'process').

  obs_space / act_space are one env's spaces (no batch axis); `step` takes and
  returns arrays with a leading [N] axis. Use as a context manager or `close()`.
  """

  def __init__(self, constructors, mode: str = 'process', context: str = 'forkserver',
               timeout: float = 600.0, max_restarts: int = 3):
    if mode not in MODES:
      raise ValueError(f"BatchEnv mode '{mode}' must be one of {MODES} (EnvConfig.parallel).")
    if not constructors:
      raise ValueError('BatchEnv needs at least one env constructor (num >= 1).')
    self._constructors = list(constructors)
    self._mode = mode
    self._timeout = timeout
    self._max_restarts = max_restarts
    self._context = multiprocessing.get_context(context) if mode == 'process' else None
    self._pool = (concurrent.futures.ThreadPoolExecutor(len(constructors))
                  if mode == 'thread' else None)
    self._workers = [self._start(index) for index in range(len(constructors))]
    spaces = [self._first_spaces(index) for index in range(len(self._workers))]
    self.obs_space, self.act_space = spaces[0]
    self._last = [None] * len(self._workers)
    self._failures = [0] * len(self._workers)
    self.restarts = 0  # Number of worker restarts so far (for logging).

  def _start(self, index):
    if self._mode == 'process':
      return _ProcessWorker(self._constructors[index], self._context, self._timeout)
    return _LocalWorker(self._constructors[index], self._pool)

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
    actions = check_actions(self.act_space, actions, self.num)
    for worker, action in zip(self._workers, actions):
      worker.submit(action)
    outputs = [self._collect(index) for index in range(self.num)]
    return {key: np.stack([obs[key] for obs in outputs]) for key in outputs[0]}

  def _collect(self, index):
    while True:
      try:
        obs = self._workers[index].result()
        if not obs['is_first']:  # A reset alone does not prove the env healthy.
          self._failures[index] = 0
        self._last[index] = obs
        return obs
      except WorkerError as error:
        obs = self._restart(index, error)
        if obs is not None:
          return obs
        # The crashed env had no episode in progress: step the new env (its reset).
        self._workers[index].submit(np.zeros(self.act_space.shape, self.act_space.dtype))

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
        break
      except WorkerError as start_error:
        self._failures[index] += 1
        if self._failures[index] > self._max_restarts:
          self.close()
          raise RuntimeError(f'Env worker {index} could not be restarted:\n{start_error}') from None
    last = self._last[index]
    self._last[index] = None
    if last is None or last['is_last']:
      return None
    obs = {key: np.copy(value) for key, value in last.items()}
    obs['reward'] = np.zeros_like(last['reward'])
    obs['is_first'] = np.zeros_like(last['is_first'])
    obs['is_last'] = np.ones_like(last['is_last'])
    obs['is_terminal'] = np.zeros_like(last['is_terminal'])
    return obs

  def close(self):
    for worker in getattr(self, '_workers', []):
      try:
        worker.close()
      except Exception:  # pylint: disable=broad-except
        pass
    if self._pool:
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

"""One decision for all hosts of a multi-host run, taken once per loop iteration.

Over several hosts (`jax.distributed`) every jitted step on the global mesh is a collective:
each host must enter the same steps in the same order, or the run hangs. Each host's loop
would otherwise decide some things alone: from its own clocks (metric lines, reports,
checkpoints, the non-finite guard), its own signals (SIGINT/SIGTERM) and its own replay (when
training can start). `HostSync.agree` turns those into one decision:

  * the clocks of process 0 decide for every host, as the DreamerV3 reference's
    `GlobalClock` (embodied/core/clock.py) has replica 0's clock decide;
  * a stop signal on any host stops every host (each saves, then exits);
  * training starts once every host can train;
  * the hosts' agent-step counters must agree (each host runs the same number of envs).

The exchange goes through the key-value store of the coordination service that
`jax.distributed.initialize` started (host to host, as orbax synchronises its multi-host
saves), not through a device collective, so the train steps already queued on the devices
keep running while the hosts agree. It takes four round trips to process 0 (0.7 ms each
between two processes on this 2-core machine), so hosts exchange every `EVERY`-th loop
iteration, as the reference asks its clocks once per 10-step driver call; in between
nothing happens that needs agreement (a stop, a report, a checkpoint waits for the next
exchange). With one process `agree` asks the local clocks every iteration and costs nothing.
"""
import itertools
import json
import os

import jax

_PREFIX = 'worldmodels_jax/train_loop'
EVERY = 10                 # loop iterations between exchanges
_TIMEOUT_MS = 3_600_000   # a host may be evaluating or saving while the others wait
# Every host creates its HostSyncs in the same order, so the n-th one has the same keys on
# all of them, and a later loop in the same processes never reads an earlier loop's keys.
_instances = itertools.count()


def host_dir(logdir: str) -> str:
  """Where this host logs (and keeps its replay): the run directory on process 0, and
  `hosts/<process>/` inside it on the others (not a run of its own: experiments/export.py
  skips `hosts/`). The run directory's checkpoints are shared by all hosts."""
  process = jax.process_index()
  return logdir if process == 0 else os.path.join(logdir, 'hosts', str(process))


class HostDisagreement(RuntimeError):
  """The hosts' loops have diverged (different agent steps); the run cannot continue."""


class HostSync:
  """`agree(step, stop, ready, **clocks)` -> `(stop, ready, clocks)`, the same on every host;
  `ready` and the clocks are callables, asked only when the hosts exchange."""

  def __init__(self):
    self.process = jax.process_index()
    self.processes = jax.process_count()
    self._round = 0
    self._calls = 0
    self._prefix = f'{_PREFIX}/{next(_instances)}'
    self._client = None
    if self.processes > 1:
      from jax._src import distributed  # pylint: disable=g-import-not-at-top
      self._client = distributed.global_state.client

  @property
  def multihost(self) -> bool:
    return self.processes > 1

  def agree(self, step: int, stop: bool, ready, **clocks):
    """Combines every host's view: `stop` if any host stops, `ready()` if it holds on all, and
    the clocks of process 0. Between exchanges: `(False, False, all clocks False)`. Raises
    `HostDisagreement` if the hosts are at different agent steps."""
    if not self.multihost:
      return stop, ready(), {name: clock() for name, clock in clocks.items()}
    self._calls += 1
    if self._calls % EVERY:
      return False, False, dict.fromkeys(clocks, False)
    names = sorted(clocks)
    mine = [int(step), bool(stop), bool(ready())] + [bool(clocks[name]()) for name in names]
    key = f'{self._prefix}/{self._round}/'
    self._client.key_value_set(key + str(self.process), json.dumps(mine))
    views = [json.loads(self._client.blocking_key_value_get(key + str(process), _TIMEOUT_MS))
             for process in range(self.processes)]
    # Every host has written this round, so every host has read the previous one.
    if self._round:
      self._client.key_value_delete(f'{self._prefix}/{self._round - 1}/{self.process}')
    self._round += 1
    steps = [view[0] for view in views]
    if len(set(steps)) > 1:
      raise HostDisagreement(
          f'The hosts are at different agent steps {steps} (process order): every host must '
          'run the same run.envs and run.steps.')
    return (any(view[1] for view in views), all(view[2] for view in views),
            dict(zip(names, (bool(flag) for flag in views[0][3:]))))

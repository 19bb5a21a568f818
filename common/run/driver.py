"""Steps a batch of environments with a host-side policy and calls callbacks.

As DreamerV3's `embodied/core/driver.py`: the driver knows nothing of the
agent or the replay. Each loop iteration it

  1. asks `policy(obs [N, ...]) -> action [N, ...]` for an action,
  2. calls every `on_step(transition, worker)` callback with one env's step
     `obs[i]` plus `action[i]` (the action chosen after seeing that step),
  3. steps the envs with the actions (an env whose `is_last` was set resets and
     ignores its action: auto-reset, see `common/envs/base.py`),

and calls every `on_episode(episode, worker)` callback when an episode ends,
with `score` (summed reward), `length` (steps after the first) and per-episode
statistics of the `log/*` keys (float keys summed, integer/bool keys: the
maximum, e.g. Crafter's per-episode achievement counts).
"""
import numpy as np


class Driver:
  """Runs `policy` in `env` (a `BatchEnv`: `obs_space`, `act_space`, `step`).

  Args:
    env: a BatchEnv with N environments.
  """

  def __init__(self, env):
    for name in ('obs_space', 'act_space', 'step'):
      if not hasattr(env, name):
        raise TypeError(f'env: {type(env).__name__} has no {name!r}; pass a BatchEnv '
                        f'(common.envs.make_batch).')
    self.env = env
    self.act_space = env.act_space
    self._step_callbacks = []
    self._episode_callbacks = []
    self._obs = None
    self._num = None
    self._episodes = None

  def on_step(self, callback):
    """`callback(transition: dict, worker: int)` for every env step."""
    self._step_callbacks.append(callback)

  def on_episode(self, callback):
    """`callback(episode: dict, worker: int)` when an episode ends."""
    self._episode_callbacks.append(callback)

  @property
  def num_envs(self):
    if self._num is None:
      self._start()
    return self._num

  def _start(self):
    num = getattr(self.env, 'num', None) or len(self.env)
    self._num = int(num)
    action = np.zeros((self._num,) + self.act_space.shape, self.act_space.dtype)
    self._obs = {key: np.asarray(value) for key, value in self.env.step(action).items()}
    self._episodes = [{} for _ in range(self._num)]

  def run(self, policy, steps=0, episodes=0):
    """Steps until at least `steps` env steps (summed over envs) and `episodes`
    finished episodes. Returns `(steps, episodes)` done by this call."""
    if steps < 0 or episodes < 0:
      raise ValueError(f'run(steps={steps}, episodes={episodes}): must not be negative.')
    if self._obs is None:
      self._start()
    step, episode = 0, 0
    while step < steps or episode < episodes:
      done_steps, done_episodes = self._step(policy)
      step += done_steps
      episode += done_episodes
    return step, episode

  def _step(self, policy):
    obs = self._obs
    action = np.asarray(policy(obs))
    expected = (self._num,) + self.act_space.shape
    if action.shape != expected:
      raise ValueError(f'policy returned actions of shape {action.shape}, expected {expected} '
                       f'(one action per env, space {self.act_space}).')
    action = action.astype(self.act_space.dtype, copy=False)
    finished = 0
    for i in range(self._num):
      transition = {key: value[i] for key, value in obs.items()}
      transition['action'] = action[i]
      for callback in self._step_callbacks:
        callback(transition, i)
      if self._track(transition, i):
        finished += 1
    self._obs = {key: np.asarray(value) for key, value in self.env.step(action).items()}
    return self._num, finished

  def _track(self, transition, worker):
    """Accumulates episode statistics; returns True when the episode ended."""
    stats = self._episodes[worker]
    if transition['is_first']:
      stats.clear()
      stats['score'] = 0.0
      stats['length'] = 0
    else:
      stats['length'] = stats.get('length', 0) + 1
    stats['score'] = stats.get('score', 0.0) + float(transition['reward'])
    for key, value in transition.items():
      if key.startswith('log/'):
        name = key[4:]
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
          stats[name] = stats.get(name, 0.0) + float(value.sum())
        else:
          stats[name] = max(stats.get(name, 0), int(value.max()))
    if transition['is_last']:
      episode = dict(stats)
      stats.clear()
      for callback in self._episode_callbacks:
        callback(episode, worker)
      return True
    return False

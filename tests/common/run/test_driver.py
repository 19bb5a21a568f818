"""Driver: transitions, action alignment and episode statistics vs a plain gymnasium loop."""
import gymnasium as gym
import numpy as np
import pytest

from common.envs.spaces import Space
from common.run.driver import Driver


class CartPoleBatch:
  """A tiny in-process BatchEnv over gymnasium CartPole (the contract's API:
  auto-reset on the first call and after is_last, actions ignored there)."""

  def __init__(self, num, seed):
    self.num = num
    self._envs = [gym.make('CartPole-v1') for _ in range(num)]
    self._seed = seed
    self._done = [True] * num
    self._resets = 0
    self.obs_space = {'vector': Space(np.float32, (4,)), 'reward': Space(np.float32, ()),
                      'is_first': Space(bool, ()), 'is_last': Space(bool, ()),
                      'is_terminal': Space(bool, ())}
    self.act_space = Space(np.int32, (), 0, 1)

  def __len__(self):
    return self.num

  def step(self, action):
    out = []
    for i, env in enumerate(self._envs):
      if self._done[i]:
        vector, _ = env.reset(seed=self._seed * 1000 + i * 100 + self._resets)
        self._resets += 1
        obs = (vector, 0.0, True, False, False)
      else:
        vector, reward, terminated, truncated, _ = env.step(int(action[i]))
        obs = (vector, reward, False, terminated or truncated, terminated)
      self._done[i] = obs[3]
      out.append(obs)
    keys = ('vector', 'reward', 'is_first', 'is_last', 'is_terminal')
    dtypes = (np.float32, np.float32, bool, bool, bool)
    return {k: np.array([o[j] for o in out], d) for j, (k, d) in enumerate(zip(keys, dtypes))}

  def close(self):
    for env in self._envs:
      env.close()


def _policy(obs):
  # Deterministic in the observation, so a plain loop can replay it.
  return (obs['vector'][:, 2] > 0).astype(np.int32)


def test_driver_matches_plain_loop():
  env = CartPoleBatch(2, seed=0)
  driver = Driver(env)
  transitions, episodes = {0: [], 1: []}, []
  driver.on_step(lambda t, i: transitions[i].append(t))
  driver.on_episode(lambda e, i: episodes.append((i, e)))
  steps, done = driver.run(_policy, steps=10, episodes=3)
  assert done >= 3 and steps >= 10 and steps % 2 == 0
  assert len(transitions[0]) + len(transitions[1]) == steps

  # Reference: each env on its own, with the same seeds and the same policy.
  for i in range(2):
    ref = gym.make('CartPole-v1')
    vector, _ = ref.reset(seed=i * 100 + 2 * 0 + i)  # first reset of env i has _resets == i
    first = transitions[i][0]
    np.testing.assert_allclose(first['vector'], vector)
    assert first['is_first'] and first['reward'] == 0
    score, length = 0.0, 0
    for t, transition in enumerate(transitions[i][:-1]):
      action = int(transition['vector'][2] > 0)
      assert transition['action'] == action
      if transition['is_last']:
        break
      vector, reward, terminated, truncated, _ = ref.step(action)
      following = transitions[i][t + 1]
      np.testing.assert_allclose(following['vector'], vector, rtol=1e-6)
      assert following['reward'] == reward and following['is_terminal'] == terminated
      score += reward
      length += 1
    first_episode = [e for w, e in episodes if w == i][0]
    assert first_episode['score'] == score and first_episode['length'] == length


def test_driver_bad_policy():
  driver = Driver(CartPoleBatch(2, seed=0))
  with pytest.raises(ValueError, match=r'policy returned actions of shape \(3,\)'):
    driver.run(lambda obs: np.zeros(3, np.int32), steps=1)

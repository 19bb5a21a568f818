"""BatchEnv: equals N single envs stepped in a loop; restarts crashed workers."""
import dataclasses
import functools
import logging
import os
import signal

import numpy as np
import pytest

from common import envs
from common.envs import EnvConfig
from common.envs.base import Env, step_spaces, transition
from common.envs.parallel import BatchEnv
from common.envs.spaces import Space

CARTPOLE = EnvConfig(name='gym_CartPole-v1', pixels=False)


def reference(config, num, seed, actions):
  """A plain loop over single envs with the seeds make_batch gives them."""
  singles = [envs.make_env(config, envs.env_seed(seed, index)) for index in range(num)]
  return [[env.step(action) for env, action in zip(singles, step)] for step in actions]


@pytest.mark.parametrize('mode', ['none', 'thread', 'process'])
def test_batch_matches_single_envs(mode):
  num, steps = 3, 30
  actions = np.random.default_rng(0).integers(0, 2, (steps, num)).astype(np.int32)
  expected = reference(CARTPOLE, num, 5, actions)
  with envs.make_batch(dataclasses.replace(CARTPOLE, parallel=mode), num, seed=5) as batch:
    assert set(batch.obs_space) == set(expected[0][0]) and len(batch) == num
    for step, action in enumerate(actions):
      obs = batch.step(action)
      for key in ('vector', 'reward', 'is_first', 'is_last', 'is_terminal'):
        assert obs[key].shape[0] == num
        for index in range(num):
          np.testing.assert_array_equal(obs[key][index], expected[step][index][key])


def test_killed_worker_is_restarted_and_its_episode_cut(caplog):
  config = EnvConfig(name='gym_CartPole-v1', pixels=False, parallel='process')
  with envs.make_batch(config, 2, seed=0) as batch:
    batch.step(np.zeros(2, np.int32))
    obs = batch.step(np.zeros(2, np.int32))
    assert not obs['is_last'].any()
    victim = batch.processes[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    with caplog.at_level(logging.WARNING):
      obs = batch.step(np.ones(2, np.int32))
    assert obs['is_last'][1] and not obs['is_terminal'][1] and obs['reward'][1] == 0
    assert not obs['is_last'][0] or obs['is_terminal'][0]
    assert 'restarting' in caplog.text and batch.restarts == 1
    obs = batch.step(np.ones(2, np.int32))
    assert obs['is_first'][1] and batch.processes[1].is_alive()
    assert not obs['is_first'][0] or obs['is_terminal'][0]


class FlakyEnv(Env):
  """Raises on its 3rd step of the first instance; later instances are healthy."""

  instances = 0

  def __init__(self):
    super().__init__()
    FlakyEnv.instances += 1
    self.fail = FlakyEnv.instances == 1
    self.obs_space = {'vector': Space(np.float32, (1,), -np.inf, np.inf), **step_spaces()}
    self.act_space = Space(np.int32, (), 0, 1)
    self.count = 0

  def _reset(self):
    self.count = 0
    return transition({'vector': np.zeros(1, np.float32)}, is_first=True)

  def _step(self, action):
    self.count += 1
    if self.fail and self.count == 3:
      raise RuntimeError('simulator exploded')
    return transition({'vector': np.full(1, self.count, np.float32)}, 1.0)


def test_raising_env_is_restarted_in_thread_mode():
  FlakyEnv.instances = 0
  with BatchEnv([FlakyEnv], mode='thread') as batch:
    flags = []
    for _ in range(5):
      obs = batch.step(np.zeros(1, np.int32))
      flags.append((bool(obs['is_first'][0]), bool(obs['is_last'][0]),
                    bool(obs['is_terminal'][0]), float(obs['vector'][0, 0])))
  # reset, step 1, step 2, crash -> cut repeating the last vector, then a new episode.
  assert flags == [(True, False, False, 0.0), (False, False, False, 1.0),
                   (False, False, False, 2.0), (False, True, False, 2.0),
                   (True, False, False, 0.0)]


class AlwaysFailing(FlakyEnv):
  def _step(self, action):
    raise RuntimeError('broken for good')


def test_env_failing_repeatedly_raises():
  with pytest.raises(RuntimeError, match='failed 3 times in a row'):
    with BatchEnv([AlwaysFailing], mode='none', max_restarts=2) as batch:
      for _ in range(10):
        batch.step(np.zeros(1, np.int32))


def test_bad_batch_input():
  with pytest.raises(ValueError, match="mode 'gpu'"):
    BatchEnv([FlakyEnv], mode='gpu')
  with BatchEnv([FlakyEnv, FlakyEnv], mode='none') as batch:
    with pytest.raises(ValueError, match=r'action has shape \(3,\), expected \(2,\)'):
      batch.step(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r'action\[1\] = 5 is out of range'):
      batch.step(np.array([0, 5]))
  with pytest.raises(ValueError, match='Unknown env'):
    envs.make_batch(EnvConfig(name='doom_basic'), 2)


def test_unpicklable_not_needed_for_partial_constructors():
  constructor = functools.partial(envs.make_env, CARTPOLE, 0)
  import pickle
  assert pickle.loads(pickle.dumps(constructor)).args[0] == CARTPOLE


def test_shared_memory_images_equal_single_envs():
  """Process mode passes images through shared memory: equal to single envs, no aliasing."""
  config = envs.suite_config('atari_pong', size=(32, 32), parallel='process')
  num, steps = 2, 12
  actions = np.random.default_rng(1).integers(0, 18, (steps, num)).astype(np.int32)
  expected = reference(config, num, 3, actions)
  seen = []
  with envs.make_batch(config, num, seed=3) as batch:
    assert batch.obs_space['image'].shape == (32, 32, 1)
    for step, action in enumerate(actions):
      obs = batch.step(action)
      seen.append(obs)
      for key in expected[step][0]:
        assert obs[key].dtype == batch.obs_space[key].dtype, key
        np.testing.assert_array_equal(obs[key], np.stack([e[key] for e in expected[step]]))
    names = [name for name, _, _ in batch._obs.specs.values()]  # pylint: disable=protected-access
  # Returned batches are copies: later steps did not overwrite earlier ones.
  for step, obs in enumerate(seen):
    np.testing.assert_array_equal(obs['image'], np.stack([e['image'] for e in expected[step]]))
  from multiprocessing import shared_memory
  for name in names:  # close() unlinked the shared memory.
    with pytest.raises(FileNotFoundError):
      shared_memory.SharedMemory(name=name)
  with pytest.raises(RuntimeError, match='after close'):
    batch.step(np.zeros(num, np.int32))


def test_hung_worker_times_out_and_is_restarted(caplog):
  with envs.make_batch(dataclasses.replace(CARTPOLE, parallel='process'), 2, seed=0) as batch:
    batch.step(np.zeros(2, np.int32))
    batch.step(np.zeros(2, np.int32))
    batch._workers[0]._timeout = 0.5  # pylint: disable=protected-access
    os.kill(batch.processes[0].pid, signal.SIGSTOP)
    with caplog.at_level(logging.WARNING):
      obs = batch.step(np.zeros(2, np.int32))
    assert 'no answer within 0.5 s' in caplog.text and batch.restarts == 1
    assert obs['is_last'][0] and not obs['is_terminal'][0] and obs['reward'][0] == 0
    assert batch.step(np.zeros(2, np.int32))['is_first'][0]


def check_actions_reference(space, actions, num):
  """The per-env check in a plain loop (spaces.check_action), the slow reference."""
  from common.envs.spaces import check_action
  value = np.asarray(actions)
  if value.shape[:1] != (num,) or value.shape[1:] != space.shape:
    raise ValueError('shape')
  return np.stack([check_action(space, value[i], f'action[{i}]') for i in range(num)])


@pytest.mark.parametrize('space', [Space(np.int32, (), 0, 5), Space(np.float32, (3,), -1.0, 1.0)])
def test_vectorised_action_check_equals_per_env_check(space):
  from common.envs.parallel import check_action_batch
  rng = np.random.default_rng(0)
  num = 4
  shape = (num,) + space.shape
  candidates = [rng.integers(-1, 7, shape), rng.integers(0, 6, shape).astype(np.float64),
                rng.integers(0, 6, shape) + 0.5, rng.uniform(-1.2, 1.2, shape),
                rng.uniform(-1, 1, shape).astype(np.float32), np.full(shape, np.nan),
                np.zeros((num + 1,) + space.shape), np.ones(shape, bool)]
  for actions in candidates + [rng.integers(0, 6, shape) for _ in range(5)]:
    try:
      expected = check_actions_reference(space, actions, num)
    except ValueError as error:
      with pytest.raises(ValueError) as raised:
        check_action_batch(space, actions, num)
      if str(error) != 'shape':
        assert str(raised.value) == str(error)
      continue
    got = check_action_batch(space, actions, num)
    assert got.dtype == expected.dtype == space.dtype
    np.testing.assert_array_equal(got, expected)


class WrongShapeEnv(FlakyEnv):
  def _step(self, action):
    return transition({'vector': np.zeros(2, np.float32)}, 1.0)


def test_obs_not_matching_obs_space_is_a_clear_error():
  with BatchEnv([WrongShapeEnv], mode='none') as batch:
    batch.step(np.zeros(1, np.int32))
    with pytest.raises(ValueError, match=r"'vector' of shape \(2,\) but its obs_space says \(1,\)"):
      batch.step(np.zeros(1, np.int32))

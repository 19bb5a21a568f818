"""MJX control tasks (`common/envs/mjx.py`) against dm_control on the same simulator states."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import envs
from common.envs.config import EnvConfig

from common.envs import mjx as mjx_envs  # noqa: E402  pylint: disable=g-import-not-at-top

try:
  mjx_envs._mjx()  # pylint: disable=protected-access
except ValueError:
  pytest.skip('MuJoCo MJX is installed on Python >= 3.12 only (setup.py)',
              allow_module_level=True)

# Unoptimised XLA compiles several times faster; the physics is the same.
FAST = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _env(task, **fields):
  return mjx_envs.MjxEnv(task, EnvConfig(name=f'mjx_{task}', **{
      'action_repeat': 1, 'pixels': False, **fields}))


def test_tolerance_matches_dm_control():
  from dm_control.utils import rewards
  x = np.linspace(-4.0, 14.0, 181)
  cases = [dict(bounds=(0.0, 0.0), margin=2.0), dict(bounds=(0.0, 0.05)),
           dict(bounds=(0.0, 0.015), margin=0.015),
           dict(bounds=(-0.25, 0.25), margin=1.0, value_at_margin=0.0, sigmoid='quadratic'),
           dict(bounds=(10.0, np.inf), margin=10.0, value_at_margin=0.0, sigmoid='linear')]
  for case in cases:
    expected = rewards.tolerance(x, **case)
    lower, upper = case.pop('bounds')
    np.testing.assert_allclose(mjx_envs.tolerance(jnp.asarray(x), lower, upper, **case),
                               expected, atol=1e-6)


# Each compiles MJX's step (~20 s on 2 cores); point_mass's code path is reacher's, and
# walker's and hopper's (contacts, as cheetah's) run with the slow tests.
@pytest.mark.parametrize('task,repeat', [
    ('cartpole_swingup', 2), ('reacher_easy', 1), ('cheetah_run', 1),
    pytest.param('point_mass_easy', 1, marks=pytest.mark.slow),
    pytest.param('walker_walk', 1, marks=pytest.mark.slow),
    pytest.param('hopper_hop', 1, marks=pytest.mark.slow)])
def test_observations_rewards_and_steps_match_dm_control(task, repeat):
  # From each state of a dm_control episode (random actions), one MJX agent step with the
  # same action gives dm_control's next observation, reward (summed over the repeats) and
  # joint positions. Its image shows in each pixel the geom that dm_control's render (its
  # segmentation, from the same camera) shows, in that geom's colour.
  import mujoco
  from dm_control import suite
  from common.envs.dmc import split_task
  env = _env(task, action_repeat=repeat, time_limit=3, pixels=True, size=(48, 64))
  palette = env.renderer.palette        # [geoms + 1, 3]: the last is the background
  domain, name = split_task(task)
  reference = suite.load(domain, name, task_kwargs={'random': 3})
  reference.reset()
  physics = reference.physics
  goal = np.zeros(2, np.float32)
  if domain == 'reacher':  # dm_control moves the target geom; here it is the episode's goal
    goal = physics.named.model.geom_pos['target', :2].astype(np.float32)
  step = jax.jit(env.step_one, compiler_options=FAST)
  rng = np.random.RandomState(0)
  for _ in range(12):
    action = rng.uniform(-1, 1, env.act_space.shape).astype(np.float32)
    state = env.state(physics.data.qpos, physics.data.qvel, goal)
    # Action bounds are [-1, 1] in these tasks, so the action is dm_control's as it is.
    reward = sum(reference.step(action).reward for _ in range(repeat))
    observation = reference.task.get_observation(physics)
    obs, state = step(jax.random.PRNGKey(0), state, jnp.asarray(action))
    assert set(obs) == set(observation) | {'reward', 'is_last', 'is_terminal', 'image'}
    segmentation = physics.render(48, 64, camera_id=env.renderer.camera, segmentation=True)
    shown = np.where(segmentation[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM),
                     segmentation[..., 0], -1)
    assert obs['image'].shape == (48, 64, 3) and obs['image'].dtype == np.uint8
    # Pixel centres against rasterised triangles: a few edge pixels may differ.
    assert np.mean(np.all(np.asarray(obs['image']) == palette[shown], -1)) > 0.99
    for key, value in observation.items():
      np.testing.assert_allclose(obs[key], np.ravel(value), atol=1e-4, err_msg=key)
    np.testing.assert_allclose(obs['reward'], reward, atol=1e-5)
    np.testing.assert_allclose(state['qpos'], physics.data.qpos, atol=1e-5)
    assert not obs['is_last'] and int(state['steps']) == repeat
  # Episodes are cut (is_last, not is_terminal) at EnvConfig.time_limit agent steps and at
  # the task's 1000 control steps, where a repeat past the end does nothing.
  state = dict(state, steps=jnp.int32(repeat))
  assert not step(None, state, jnp.asarray(action))[0]['is_last']
  obs, after = step(None, dict(state, steps=jnp.int32(2 * repeat)), jnp.asarray(action))
  assert bool(obs['is_last']) and not bool(obs['is_terminal'])
  obs, after = step(None, dict(state, steps=jnp.int32(999)), jnp.asarray(action))
  assert bool(obs['is_last']) and int(after['steps']) == 1000


def test_initial_states_follow_dm_control():
  keys = jax.random.split(jax.random.PRNGKey(0), 256)

  def initial(task):
    env = _env(task)
    obs, state = jax.jit(jax.vmap(env.reset_one), compiler_options=FAST)(keys)
    return env, obs, state

  # Reacher: the shoulder (unlimited) over [-pi, pi], the wrist within its range, the target
  # at radius 0.05-0.20 in every direction, at rest.
  env, obs, state = initial('reacher_easy')
  shoulder, wrist = np.asarray(state['qpos']).T
  assert shoulder.min() < -2.8 and shoulder.max() > 2.8
  low, high = env.model.jnt_range[1]
  assert low <= wrist.min() < low + 0.3 and high - 0.3 < wrist.max() <= high
  radius = np.linalg.norm(np.asarray(state['goal']), axis=-1)
  assert 0.05 <= radius.min() < 0.07 and 0.18 < radius.max() <= 0.20
  assert np.all(np.asarray(obs['velocity']) == 0)
  # Cartpole swing-up: cart near 0, pole hanging down (cos -1), velocities ~0.01.
  _, obs, state = initial('cartpole_swingup')
  position = np.asarray(obs['position'])
  assert np.abs(position[:, 0]).max() < 0.05 and np.all(position[:, 1] < -0.99)
  assert 0.005 < np.asarray(state['qvel']).std() < 0.02


def test_registry_and_suite_defaults():
  # The dmc suite's action repeat 2, proprio; Dreamer's default suite for them is
  # dmc_proprio.
  from dreamer import configs
  config = envs.suite_config('mjx_cartpole_balance')
  assert (config.action_repeat, config.pixels, config.proprio) == (2, False, True)
  assert isinstance(envs.make_jax(config), mjx_envs.MjxEnv)
  assert configs.suite_for_env('mjx_cheetah_run') == 'dmc_proprio'
  # PlaNet's is its DMC setup from pixels, with the paper's action repeat per domain.
  from common.run import config as config_lib
  from planet import configs as planet_configs
  planet = config_lib.parse(['--env', 'mjx_cartpole_swingup', '--logdir', '/tmp/p'],
                            planet_configs.PRESETS)
  assert planet.suite == 'dmc_vision'
  assert (planet.env.pixels, planet.env.proprio, planet.env.action_repeat) == (True, False, 8)


def test_bad_names_and_observations():
  with pytest.raises(ValueError, match='cartpole_swingup'):
    envs.check_name(EnvConfig(name='mjx_quadruped_walk'))
  with pytest.raises(ValueError, match='no observation'):
    mjx_envs.MjxEnv('cartpole_swingup', EnvConfig(name='mjx_cartpole_swingup', pixels=False,
                                                  proprio=False))
  with pytest.raises(ValueError, match='cameras'):
    mjx_envs.MjxEnv('cartpole_swingup', EnvConfig(name='mjx_cartpole_swingup', camera=7))

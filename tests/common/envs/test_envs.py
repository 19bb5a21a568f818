"""Adapters of common.envs: declared spaces, auto-reset, episode ends, bad input."""
import dataclasses

import numpy as np
import pytest

from common import envs
from common.envs import EnvConfig, Space
from common.envs.minecraft import ITEMS, MILESTONES, Minecraft


def check_obs(obs, obs_space):
  """Independent check of one observation against its declared spaces."""
  assert set(obs) == set(obs_space), (sorted(obs), sorted(obs_space))
  for key, space in obs_space.items():
    value = np.asarray(obs[key])
    assert value.dtype == space.dtype, (key, value.dtype, space.dtype)
    assert value.shape == space.shape, (key, value.shape, space.shape)
    assert np.all(value >= space.low) and np.all(value <= space.high), key
  for key in ('reward', 'is_first', 'is_last', 'is_terminal'):
    assert key in obs
  assert not (obs['is_first'] and obs['is_last'])
  if obs['is_terminal'] and not obs['is_last']:
    pytest.fail('is_terminal without is_last in an env that has no life-loss discount')


def run(env, steps, seed=0):
  rng = np.random.default_rng(seed)
  history = []
  for _ in range(steps):
    obs = env.step(env.act_space.sample(rng))
    check_obs(obs, env.obs_space)
    history.append(obs)
  return history


def check_boundaries(history, limit):
  """With a time limit of `limit` agent steps: first, limit steps, a cut, then reset."""
  flags = [(bool(o['is_first']), bool(o['is_last']), bool(o['is_terminal'])) for o in history]
  expected = [(True, False, False)] + [(False, False, False)] * (limit - 1) + [(False, True, False)]
  assert flags[:limit + 1] == expected
  assert flags[limit + 1] == (True, False, False)
  assert history[0]['reward'] == 0 and history[limit + 1]['reward'] == 0


def test_atari_pong_dreamerv3_settings_and_time_limit():
  env = envs.make('atari_pong', time_limit=3)
  assert env.obs_space['image'] == Space(np.uint8, (96, 96, 1), 0, 255)
  assert env.act_space.discrete and env.act_space.n == 18 and env.act_space.shape == ()
  check_boundaries(run(env, 6), limit=3)
  env100k = envs.make('atari100k_pong')
  assert env100k.obs_space['image'].shape == (64, 64, 3)
  assert env100k.act_space.n == 18  # all actions, as DreamerV3's 2411f7d config
  assert envs.make('atari100k_pong', actions='needed').act_space.n == 6  # Pong's minimal set


def test_atari_frames_match_a_plain_ale_loop():
  """Repeat 4 with a max over the last two frames, resized bilinearly (PIL)."""
  import ale_py
  from ale_py import roms
  from PIL import Image
  env = envs.make('atari_pong', sticky=False, noops=0, size=(84, 84), seed=3)
  ale = ale_py.ALEInterface()
  ale.setInt('random_seed', 3)
  ale.setFloat('repeat_action_probability', 0.0)
  ale.loadROM(roms.get_rom_path('pong'))
  actions = ale.getLegalActionSet()
  ale.reset_game()
  env.step(0)
  for action in [0, 3, 3, 4, 1, 2, 5]:
    obs = env.step(action)
    reward, frames = 0.0, []
    for _ in range(4):
      reward += ale.act(actions[action])
      frames.append(ale.getScreenGrayscale())
    pooled = np.maximum(frames[-2], frames[-1])
    expected = np.asarray(Image.fromarray(pooled).resize((84, 84), Image.BILINEAR))
    np.testing.assert_array_equal(obs['image'][..., 0], expected)
    assert obs['reward'] == reward


def test_dmc_cartpole_swingup_pixels_and_action_scaling():
  env = envs.make('dmc_cartpole_swingup', time_limit=2, proprio=True)
  assert env.obs_space['image'].shape == (64, 64, 3)
  assert env.obs_space['position'].shape == (3,) and env.obs_space['velocity'].shape == (2,)
  assert env.act_space == Space(np.float32, (1,), -1.0, 1.0)
  history = run(env, 4)
  check_boundaries(history, limit=2)
  assert history[1]['image'].std() > 0  # A rendered scene, not a blank frame.
  # Rescaling [-1, 1] to a spec's bounds: the reference is the affine map.
  env._low, env._high = np.array([-2.0]), np.array([6.0])
  applied = []
  env._env.step = lambda action: (applied.append(action), env._env.reset())[1]
  env.step(np.array([0.5], np.float32))
  np.testing.assert_allclose(applied[-1], [4.0])


def test_crafter_achievements_and_noreward():
  env = envs.make('crafter_noreward', time_limit=2)
  assert 'log/achievement_collect_wood' in env.obs_space and 'log/reward' in env.obs_space
  assert env.act_space.n == 17
  history = run(env, 4)
  check_boundaries(history, limit=2)
  assert all(o['reward'] == 0 for o in history)  # noreward: the reward is only logged.


def test_craftax_classic_pixels_batch():
  from common.envs.craftax import CraftaxEnv
  from common.envs.jax_env import JaxBatch
  # Unoptimised XLA: compiles ~3x faster; the compiled step is cached across runs.
  env = CraftaxEnv('classic', envs.suite_config('craftax_classic', time_limit=2))
  batch = JaxBatch(env, 2, seed=0, compiler_options={'xla_backend_optimization_level': 0,
                                                     'xla_llvm_disable_expensive_passes': True})
  rng = np.random.default_rng(0)
  history = []
  for _ in range(4):
    obs = batch.step(np.stack([batch.act_space.sample(rng) for _ in range(2)]))
    for index in range(2):
      check_obs({key: value[index] for key, value in obs.items()}, batch.obs_space)
    history.append({key: value[0] for key, value in obs.items()})
  assert batch.obs_space['image'].shape == (64, 64, 3) and batch.act_space.n == 17
  check_boundaries(history, limit=2)
  assert history[1]['image'].std() > 0


def test_gymnax_terminal_cut_and_continuous_scaling():
  # CartPole: a random policy's pole falls (terminal); a 5-step limit cuts Pendulum.
  cartpole = envs.make('gymnax_CartPole-v1', seed=1)
  assert cartpole.obs_space['vector'].shape == (4,) and cartpole.act_space.n == 2
  history = run(cartpole, 120)
  ends = [i for i, obs in enumerate(history) if obs['is_last']]
  assert ends and all(history[i]['is_terminal'] for i in ends)
  assert all(history[i + 1]['is_first'] for i in ends if i + 1 < len(history))
  pendulum = envs.make('gymnax_Pendulum-v1', time_limit=5)
  assert pendulum.act_space == Space(np.float32, (1,), -1.0, 1.0)
  check_boundaries(run(pendulum, 8), limit=5)
  # Our action 1.0 is the env's maximal torque 2.0: Pendulum's cost counts 0.001 * u ** 2.
  from common.envs.gymnax import GymnaxEnv
  env = GymnaxEnv('Pendulum-v1', envs.suite_config('gymnax_Pendulum-v1'))
  np.testing.assert_allclose(env._action(np.float32([1.0, -1.0, 0.0])), [2.0, -2.0, 0.0])
  minatar = envs.make('gymnax_Breakout-MinAtar')
  assert minatar.obs_space['vector'].shape == (400,) and minatar.act_space.n == 3
  run(minatar, 3)


def test_gym_cartpole_terminal_and_auto_reset():
  env = envs.make('gym_CartPole-v1', seed=1)
  assert env.obs_space['vector'].shape == (4,) and env.act_space.n == 2
  history = run(env, 120)
  ends = [index for index, obs in enumerate(history) if obs['is_last']]
  assert ends, 'a random CartPole policy falls within 120 steps'
  for index in ends[:-1] if ends[-1] == len(history) - 1 else ends:
    assert history[index]['is_terminal']  # The pole fell: terminal.
    assert history[index + 1]['is_first'] and history[index + 1]['reward'] == 0


class _RecordingBoxEnv:
  """A gymnasium-like env recording the actions it receives."""

  def __init__(self):
    import gymnasium
    self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64)
    self.action_space = gymnasium.spaces.Box(np.array([0.0, -4.0]), np.array([10.0, 4.0]))
    self.actions = []

  def reset(self, seed=None):
    return np.zeros(2), {}

  def step(self, action):
    self.actions.append(action)
    return np.ones(2), 1.0, False, False, {}

  def close(self):
    pass


def test_gym_box_actions_rescaled_and_bad_actions_rejected():
  from common.envs.gym import Gym
  raw = _RecordingBoxEnv()
  env = Gym('Recording-v0', EnvConfig(pixels=False), env=raw)
  assert env.act_space == Space(np.float32, (2,), -1.0, 1.0)
  env.step(None)  # The first call resets and ignores the action.
  obs = env.step(np.array([-1.0, 0.5], np.float32))
  np.testing.assert_allclose(raw.actions[-1], [0.0, 2.0])
  assert obs['vector'].dtype == np.float32 and obs['reward'] == 1.0
  with pytest.raises(ValueError, match='action has shape'):
    env.step(np.zeros(3, np.float32))
  with pytest.raises(ValueError, match='out of range'):
    env.step(np.array([1.5, 0.0], np.float32))
  cartpole = envs.make('gym_CartPole-v1')
  cartpole.step(0)
  with pytest.raises(ValueError, match='out of range'):
    cartpole.step(2)
  with pytest.raises(ValueError, match='not an integer'):
    cartpole.step(0.5)


def test_unknown_names():
  with pytest.raises(ValueError, match='atari, atari100k, dmc, crafter, craftax'):
    envs.make('pong')
  with pytest.raises(ValueError, match="Unknown Atari game 'notagame'"):
    envs.make('atari_notagame')
  with pytest.raises(ValueError, match="Unknown DMC task 'walker_fly'"):
    envs.make('dmc_walker_fly')
  with pytest.raises(ValueError, match="Unknown gymnasium id 'Nope-v0'"):
    envs.make('gym_Nope-v0')
  with pytest.raises(ValueError, match='craftax_classic or craftax'):
    envs.make('craftax_deluxe')
  with pytest.raises(TypeError, match='Unknown EnvConfig field'):
    envs.make('gym_CartPole-v1', colour=True)
  with pytest.raises(ImportError, match='MineRL'):
    envs.make('minecraft_diamond')


class _Enum:
  def __init__(self, *values):
    self.values = values


class _MineRLActionSpace:
  def __init__(self):
    binary = _Enum(0, 1)
    self.spaces = {key: binary for key in ('forward', 'back', 'left', 'right', 'jump', 'sneak',
                                           'sprint', 'attack')}
    self.spaces['camera'] = None
    self.spaces['craft'] = _Enum('none', 'torch', 'stick', 'planks', 'crafting_table')
    self.spaces['nearbyCraft'] = _Enum('none', 'wooden_axe', 'wooden_pickaxe', 'stone_axe',
                                       'stone_pickaxe', 'iron_axe', 'iron_pickaxe', 'furnace')
    self.spaces['nearbySmelt'] = _Enum('none', 'iron_ingot', 'coal')
    self.spaces['place'] = _Enum('none', 'dirt', 'stone', 'cobblestone', 'crafting_table',
                                 'furnace', 'torch')
    self.spaces['equip'] = _Enum('none', 'air', 'wooden_axe', 'wooden_pickaxe', 'stone_axe',
                                 'stone_pickaxe', 'iron_axe', 'iron_pickaxe')

  def noop(self):
    action = {key: 0 for key in self.spaces}
    action.update(camera=np.zeros(2, np.float32), craft='none', nearbyCraft='none',
                  nearbySmelt='none', place='none', equip='none')
    return action


class MineRLStandIn:
  """MineRLObtainDiamond-v0's observation/action structure; a log appears when
  attacking, planks when crafting them; the episode ends after 6 steps."""

  def __init__(self):
    self.action_space = _MineRLActionSpace()
    self.received = []

  def _obs(self):
    return {'pov': np.full((64, 64, 3), 7, np.uint8), 'inventory': dict(self.inventory),
            'equipped_items': {'mainhand': {'type': 'none', 'damage': 0, 'maxDamage': 0}}}

  def reset(self):
    self.inventory = {item: 0 for item in ITEMS if item != 'diamond'}
    self.steps = 0
    return self._obs()

  def step(self, action):
    assert set(action) == set(self.action_space.spaces)
    self.received.append(action)
    self.steps += 1
    if action['attack']:
      self.inventory['log'] += 1
    if action['craft'] == 'planks':
      self.inventory['log'] -= 1
      self.inventory['planks'] += 4
    return self._obs(), 0.0, self.steps >= 6, {}

  def close(self):
    pass


def test_minecraft_adapter_on_a_minerl_stand_in():
  stand_in = MineRLStandIn()
  config = envs.suite_config('minecraft_diamond')
  env = Minecraft('diamond', config, env_factory=lambda: stand_in)
  from common.envs.minecraft import ACTIONS
  names = [name for name, _ in ACTIONS]
  assert env.obs_space['image'].shape == (64, 64, 3) and env.act_space.n == len(names)
  assert env.obs_space['inventory'].shape == (len(ITEMS),)
  attack, planks = names.index('attack'), names.index('craft_planks')
  turn = names.index('turn_left')
  plan = [0, attack, attack, planks, turn, 0, 0, 0, attack]
  history = []
  for action in plan:
    obs = env.step(action)
    check_obs(obs, env.obs_space)
    history.append(obs)
  # Milestones: log (first attack) and planks, once each per episode.
  assert [float(o['reward']) for o in history] == [0, 1, 0, 1, 0, 0, 0, 0, 1]
  assert history[6]['is_last'] and not history[6]['is_terminal'] and history[7]['is_first']
  np.testing.assert_array_equal(stand_in.received[3]['camera'], [0.0, -15.0])
  assert history[3]['inventory'][ITEMS.index('planks')] == 4
  assert history[3]['inventory_max'][ITEMS.index('log')] == 2
  assert set(MILESTONES) <= set(ITEMS)


def test_suite_defaults_feed_env_config():
  config = envs.suite_config('atari100k_breakout', base=EnvConfig(parallel='none'))
  assert config.size == (64, 64) and not config.sticky and config.actions == 'all'
  assert config.noops == 0 and envs.suite_config('atari_pong').noops == 0
  assert config.parallel == 'none' and config.name == 'atari100k_breakout'
  assert dataclasses.replace(config, size=(32, 32)).size == (32, 32)


def test_gym_module_id_imports_the_users_module(tmp_path, monkeypatch):
  # A user's module registers its env; `gym_<module>:<id>` imports it where the env is built.
  (tmp_path / 'user_envs_for_test.py').write_text(
      "import gymnasium\n"
      "gymnasium.register(id='UserCartPole-v0',\n"
      "                   entry_point='gymnasium.envs.classic_control.cartpole:CartPoleEnv')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  env = envs.make('gym_user_envs_for_test:UserCartPole-v0')
  obs = env.step(0)
  assert obs['is_first'] and obs['vector'].shape == (4,)
  env.close()
  with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
    envs.make('gym_no_such_module:X-v0')


def record_states(env, action, steps):
  """The simulator states and observations of an episode's first `steps` steps under a fixed
  action (restore tests)."""
  obs, states, seen = env.step(None), [], []
  for _ in range(steps):
    states.append(env.physics_state())
    seen.append(obs)
    obs = env.step(action)
  return states, seen


def test_dmc_restore_puts_the_simulator_back_in_a_recorded_state():
  """DMC.restore (goal reaching): the same episode (seed), set back to step 3's physics
  state, observes what step 3 observed and steps on as the episode did."""
  from common.envs.dmc import DMC  # pylint: disable=g-import-not-at-top
  config = EnvConfig(name='dmc_reacher_easy', pixels=False, proprio=True, action_repeat=2)
  env, action = DMC('reacher_easy', config, seed=3), np.array([0.5, -0.3], np.float32)
  states, seen = record_states(env, action, 5)
  again = DMC('reacher_easy', config, seed=3)
  again.step(None)
  restored = again.restore(states[3])
  assert restored['is_first']
  for key in ('position', 'to_target', 'velocity'):
    np.testing.assert_allclose(restored[key], seen[3][key], rtol=1e-6)
  np.testing.assert_allclose(again.step(action)['position'], seen[4]['position'], rtol=1e-6)
  env.close()
  again.close()


def test_gym_restore_and_joint_distance():
  """Gym.restore (goal reaching) for classic control: Pendulum set back to step 3's state
  observes what step 3 observed and steps on as the episode did; its angle wraps around."""
  from common.envs.gym import Gym  # pylint: disable=g-import-not-at-top
  config = envs.suite_config('gym_Pendulum-v1')
  env, action = Gym('Pendulum-v1', config, seed=3), np.array([0.5], np.float32)
  states, seen = record_states(env, action, 5)
  again = Gym('Pendulum-v1', config, seed=4)
  again.step(None)
  restored = again.restore(states[3])
  assert restored['is_first']
  np.testing.assert_allclose(restored['vector'], seen[3]['vector'], rtol=1e-6)
  np.testing.assert_allclose(again.step(action)['vector'], seen[4]['vector'], rtol=1e-6)
  np.testing.assert_allclose(again.joint_positions(), states[4][:1])
  assert abs(again.joint_distance([np.pi - 0.05], [-np.pi + 0.05]) - 0.1) < 1e-9
  with pytest.raises(ValueError, match='joint positions'):
    Gym('CartPole-v1', envs.suite_config('gym_CartPole-v1')).joint_positions()

"""The Dreamer agent's pure functions with the debug size on synthetic data."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.envs.spaces import Space
from common.run import config as config_lib
from dreamer import agent as agent_lib
from dreamer import configs

B, T, N = 2, 8, 3    # batches hold K = 1 replay-context step + T - 1 trained steps
K = 1
# Tests check behaviour, not speed: skip XLA's backend optimisations to compile faster.
FAST = {'xla_backend_optimization_level': 0}


def jit(function, **kwargs):
  return jax.jit(function, compiler_options=FAST, **kwargs)


def debug_config(**run):
  config = config_lib.parse(['--env', 'gym_CartPole-v1', '--size', 'debug'], configs.PRESETS)
  return dataclasses.replace(config, run=dataclasses.replace(
      config.run, batch_size=B, batch_length=T, **run))


def spaces(image=True):
  obs = {'vector': Space(np.float32, (3,)), 'reward': Space(np.float32, ()),
         'is_first': Space(bool, ()), 'is_last': Space(bool, ()),
         'is_terminal': Space(bool, ())}
  if image:
    obs['image'] = Space(np.uint8, (16, 16, 3))
  return obs


def synthetic_batch(seed=0, discrete=True, deter=64, stoch=4, classes=4):
  """A batch as replay returns it, with the policy latents of the replay context."""
  rng = np.random.default_rng(seed)
  latent = jnp.asarray(rng.normal(size=(B, T, deter)), jnp.bfloat16)
  is_first = np.zeros((B, T), bool)
  is_first[:, 0] = True
  is_terminal = np.zeros((B, T), bool)
  is_terminal[0, -1] = True
  return {
      'image': rng.integers(0, 256, (B, T, 16, 16, 3)).astype(np.uint8),
      'vector': rng.normal(size=(B, T, 3)).astype(np.float32),
      'reward': rng.normal(size=(B, T)).astype(np.float32),
      'is_first': is_first, 'is_last': is_terminal.copy(), 'is_terminal': is_terminal,
      'action': (rng.integers(0, 4, (B, T)).astype(np.int32) if discrete
                 else rng.uniform(-1, 1, (B, T, 2)).astype(np.float32)),
      'context/deter': np.asarray(jax.lax.bitcast_convert_type(latent, jnp.uint16)),
      'context/stoch': rng.integers(0, classes, (B, T, stoch)).astype(np.uint8),
  }


@pytest.fixture(scope='module')
def discrete():
  agent = agent_lib.make_agent(debug_config(), spaces(), Space(np.int32, (), 0, 3))
  state = jit(agent.init)(jax.random.PRNGKey(0))
  return agent, state, jit(agent.train, donate_argnums=0), jit(agent.policy, static_argnums=(4,))


def test_train_compiles_once_and_is_finite(discrete):
  agent, state, train, _ = discrete
  state = jax.tree.map(jnp.array, state)  # a copy: train donates its argument
  before = jax.tree.map(np.asarray, state.params)
  for seed in range(3):
    state, metrics = train(state, synthetic_batch(seed))
  assert train._cache_size() == 1
  entries = metrics.pop('replay')   # the trained steps' latents, for replay
  assert entries['context/deter'].shape == (B, T - K, 64)
  assert entries['context/deter'].dtype == jnp.uint16
  assert entries['context/stoch'].shape == (B, T - K, 4)
  assert entries['context/stoch'].dtype == jnp.uint8
  for name, value in metrics.items():
    assert np.isfinite(value), name
  assert float(metrics['nonfinite']) == 0.0 and int(state.step) == 3
  for key in ('loss', 'model_loss', 'policy_loss', 'value_loss', 'repval_loss', 'dyn_loss',
              'rep_loss', 'reward_loss', 'continue_loss', 'rec_image_loss', 'rec_vector_loss'):
    assert key in metrics, key
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), before, state.params)
  assert any(jax.tree.leaves(changed['world_model']))


def test_nonfinite_update_is_skipped(discrete):
  _, state, train, _ = discrete
  state = jax.tree.map(jnp.array, state)
  before = jax.tree.map(np.asarray, state)
  batch = synthetic_batch(1)
  batch['reward'][0, 3] = np.nan
  state, metrics = train(state, batch)
  assert float(metrics['nonfinite']) == 1.0
  assert int(state.step) == int(before.step)
  jax.tree.map(np.testing.assert_array_equal, before.params, jax.tree.map(np.asarray, state.params))
  assert not np.array_equal(before.key, np.asarray(state.key))  # the RNG moves on


def _obs(seed, first):
  batch = synthetic_batch(seed)
  obs = {k: v[:, 0] for k, v in batch.items() if k != 'action' and not k.startswith('context/')}
  obs = {k: np.concatenate([v, v[:1]]) for k, v in obs.items()}  # N = 3 envs
  obs['is_first'] = np.asarray(first, bool)
  return obs


def test_discrete_policy_shapes_and_modes(discrete):
  agent, state, _, policy = discrete
  carry = agent.init_policy_carry(N)
  for mode in ('train', 'eval', 'random'):
    action, carry = policy(state, carry, _obs(0, [True] * N), jax.random.PRNGKey(1), mode)
    assert action.shape == (N,) and action.dtype == jnp.int32
    assert np.all((np.asarray(action) >= 0) & (np.asarray(action) < 4))
  assert carry['action'].shape == (N, 4)


def test_policy_carry_resets_on_is_first(discrete):
  agent, state, _, policy = discrete
  key = jax.random.PRNGKey(3)
  fresh = agent.init_policy_carry(N)
  # Advance env 0 and 2 for a few steps so their carry holds history.
  carry = fresh
  for seed in range(3):
    _, carry = policy(state, carry, _obs(seed, [seed == 0] * N), jax.random.PRNGKey(seed), 'train')
  first = [True, False, True]
  _, after = policy(state, carry, _obs(5, first), key, 'train')
  _, reference = policy(state, fresh, _obs(5, [True] * N), key, 'train')
  for i in (0, 2):  # reset envs match a fresh start with the same observation and key
    np.testing.assert_allclose(after['latent'].deter[i], reference['latent'].deter[i], atol=1e-5)
  assert not np.allclose(after['latent'].deter[1], reference['latent'].deter[1], atol=1e-5)


def test_report_openloop_video(discrete):
  agent, state, _, _ = discrete
  metrics = jit(agent.report)(state, synthetic_batch(0))
  video = metrics['video/openloop']
  assert video.dtype == jnp.uint8
  # report_sequences=2 rows of truth|model|error over the T - K steps after the context
  assert video.shape == (T - K, 2 * 16, 3 * 16, 3)
  np.testing.assert_array_equal(video[:, :16, :16], synthetic_batch(0)['image'][0, K:])
  assert np.isfinite(metrics['openloop_image_mse'])


def test_continuous_policy_shapes():
  agent = agent_lib.make_agent(debug_config(), spaces(image=False), Space(np.float32, (2,), -1, 1))
  state = jit(agent.init)(jax.random.PRNGKey(0))
  policy = jit(agent.policy, static_argnums=(4,))
  carry = agent.init_policy_carry(N)
  obs = {k: v for k, v in _obs(0, [True] * N).items() if k != 'image'}
  for mode in ('train', 'eval'):
    action, carry = policy(state, carry, obs, jax.random.PRNGKey(2), mode)
    assert action.shape == (N, 2) and action.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(action)) <= 1.0)


def test_bad_spaces_have_clear_errors():
  with pytest.raises(ValueError, match='no image and no vector'):
    agent_lib.make_agent(debug_config(), {'reward': Space(np.float32, ())},
                         Space(np.int32, (), 0, 3))
  with pytest.raises(ValueError, match='act_space'):
    agent_lib.make_agent(debug_config(), spaces(False), Space(np.float32, (2, 2), -1, 1))


def test_report_logs_latent_geometry_of_the_posterior(discrete):
  agent, state, _, _ = discrete
  metrics = jit(agent.report)(state, synthetic_batch(0))
  for name in ('deter', 'stoch', 'feat'):
    assert -1 <= metrics[f'geometry/cos_{name}'] <= 1
    assert np.isfinite(metrics[f'geometry/dist_step_corr_{name}'])


def test_straightening_regulariser_adds_to_the_model_loss_and_trains_the_encoder():
  """agent.straighten_scale: model loss = the plain loss + scale x common.planning.geometry's loss of
  the posterior features; its gradient reaches the encoder and the RSSM."""
  from common.planning import geometry  # pylint: disable=g-import-not-at-top
  from dreamer import world_model as wm_lib  # pylint: disable=g-import-not-at-top
  batch, key = synthetic_batch(0), jax.random.PRNGKey(3)
  results = {}
  for scale in (0.0, 2.0):
    config = debug_config()
    config = dataclasses.replace(config, agent=dataclasses.replace(
        config.agent, straighten_scale=scale))
    wm = wm_lib.make(config.agent, spaces(), Space(np.int32, (), 0, 3))
    params = wm_lib.init_params(wm, jax.random.PRNGKey(0))
    loss_fn = lambda p: wm_lib.loss(wm, p, batch, key)
    (loss, (_, feat, rest, metrics)), grads = jit(jax.value_and_grad(loss_fn, has_aux=True))(
        params)
    results[scale] = loss, feat, rest, metrics, grads
  loss0, feat, rest, _, grads0 = results[0.0]
  loss2, _, _, metrics, grads2 = results[2.0]
  expected = geometry.straightening_loss(feat, rest['is_first'])
  np.testing.assert_allclose(metrics['straighten_loss'], expected, rtol=1e-5)
  np.testing.assert_allclose(loss2, loss0 + 2.0 * expected, rtol=1e-5)
  for module in ('encoder', 'rssm'):
    delta = jax.tree.map(lambda a, b: jnp.abs(a - b).max(), grads0[module], grads2[module])
    assert max(jax.tree.leaves(delta)) > 0, module


@pytest.mark.parametrize('kind', ['cem', 'mppi', 'gradient'])
def test_planning_policies_act_in_bounds_and_keep_their_plan(kind):
  """agent.policy=cem|mppi|gradient: actions [N, A] in [-1, 1] from a plan [N, H, A] that
  the carry keeps for the next step's warm start."""
  config = debug_config()
  planner = dataclasses.replace(config.agent.planner, horizon=3, candidates=16, top_k=4,
                                iterations=2, actor_candidates=2, grad_steps=2)
  config = dataclasses.replace(config, agent=dataclasses.replace(
      config.agent, policy=kind, planner=planner))
  agent = agent_lib.make_agent(config, spaces(image=False), Space(np.float32, (2,), -1, 1))
  state = jit(agent.init)(jax.random.PRNGKey(0))
  carry = agent.init_policy_carry(N)
  batch = synthetic_batch(0, discrete=False)
  obs = {k: batch[k][0, :N] if k != 'is_first' else np.ones(N, bool)
         for k in ('vector', 'reward', 'is_first', 'is_last', 'is_terminal')}
  policy = jit(agent.policy, static_argnums=(4,))
  action, carry = policy(state, carry, obs, jax.random.PRNGKey(1), 'eval')
  assert action.shape == (N, 2) and np.all(np.abs(action) <= 1)
  assert carry['plan'].shape == (N, 3, 2)
  np.testing.assert_array_equal(action, carry['plan'][:, 0])


def test_planning_policy_on_discrete_actions_is_a_one_line_error():
  config = debug_config()
  config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, policy='cem'))
  with pytest.raises(ValueError, match='agent.policy=cem.*discrete'):
    agent_lib.make_agent(config, spaces(), Space(np.int32, (), 0, 3))


def test_plan2explore_trains_every_part_and_collects_with_its_exploration_actor():
  config = config_lib.parse(['--config', 'plan2explore', '--env', 'gym_CartPole-v1',
                             '--size', 'debug'], configs.PRESETS)
  config = dataclasses.replace(config, run=dataclasses.replace(
      config.run, batch_size=B, batch_length=T))
  assert config.algo == 'plan2explore' and config.agent.explore.kind == 'plan2explore'
  agent = agent_lib.make_agent(config, spaces(image=False), Space(np.float32, (2,), -1, 1))
  state = jit(agent.init)(jax.random.PRNGKey(0))
  before = jax.tree.map(np.asarray, state.params)
  batch = {k: v for k, v in synthetic_batch(0, discrete=False).items() if k != 'image'}
  train = jit(agent.train)
  for _ in range(2):   # the V3 optimizer's warmup starts at a learning rate of 0
    state, metrics = train(state, batch)
  assert float(metrics['nonfinite']) == 0
  for key in ('ensemble_loss', 'expl_imag_reward_mean', 'expl_policy_loss', 'policy_loss'):
    assert np.isfinite(metrics[key]), key
  assert float(metrics['expl_imag_reward_mean']) > 0   # disagreement of random members
  for module in ('ensemble', 'expl_actor', 'expl_critic', 'actor', 'world_model'):
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params[module],
                         before[module])
    assert max(jax.tree.leaves(moved)) > 0, module
  # 'train' mode acts with the exploration actor, 'eval' with the task actor.
  other = state.replace(params=dict(state.params, expl_actor=state.params['actor']))
  obs = {k: batch[k][:, 1] for k in ('vector', 'reward', 'is_last', 'is_terminal')}
  obs['is_first'] = np.ones(B, bool)
  policy, carry, key = jit(agent.policy, static_argnums=(4,)), agent.init_policy_carry(B), \
      jax.random.PRNGKey(2)
  act = lambda s, mode: np.asarray(policy(s, carry, obs, key, mode)[0])
  assert not np.allclose(act(state, 'train'), act(other, 'train'))
  np.testing.assert_array_equal(act(state, 'eval'), act(other, 'eval'))

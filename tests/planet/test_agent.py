"""PlaNet: preprocessing, latent overshooting indexing, training and resume on DMC pixels."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.envs.spaces import Space
from common.nn import rssm as rssm_lib
from common.run import config as config_lib
from planet import agent as agent_lib
from planet import configs
from planet import main as planet_main

# Compile time dominates these few-step tests: skip XLA's expensive backend passes.
FAST = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def debug_config(**sets):
  overrides = [f'{k}={v}' for k, v in sets.items()]
  return config_lib.compose(configs.PRESETS, env='dmc_cartpole_balance', size='debug',
                            overrides=overrides, logdir='/tmp/unused')


def test_presets_follow_the_paper():
  config = config_lib.compose(configs.PRESETS, env='dmc_cartpole_swingup', logdir='/tmp/x')
  assert config.env.action_repeat == 8 and not config.env.proprio
  assert (config.agent.rssm.deter, config.agent.rssm.stoch) == (200, 30)
  assert config.agent.rssm.core == 'classic_gru'   # TF's GRUBlockCell, as the reference
  assert not config.agent.kl.free_avg              # free nats clip each step's KL
  assert (config.run.batch_size, config.run.batch_length) == (50, 50)
  # 5 seed episodes of 1000 / 8 steps (+ reset step); 100 updates of 50 x 50 per episode.
  assert config.run.prefill == 5 * 126
  assert config.run.train_ratio == pytest.approx(100 * 2500 / 125)
  assert config.run.pretrain == 100  # train C updates, then collect (train before collecting)
  assert config_lib.compose(configs.PRESETS, env='dmc_walker_walk',
                            logdir='/tmp/x').env.action_repeat == 2
  assert config_lib.compose(configs.PRESETS, env='dmc_cheetah_run',
                            logdir='/tmp/x').env.action_repeat == 4


def test_small_size_keeps_the_paper_planner_and_schedule():
  config = config_lib.compose(configs.PRESETS, env='dmc_cartpole_balance', size='small',
                              logdir='/tmp/x')
  assert (config.agent.rssm.deter, config.agent.rssm.stoch, config.agent.encoder.depth) == (
      100, 30, 16)
  assert config.agent.planner == configs.PlannerConfig()  # horizon 12, 1000 / 100, 10 iterations
  assert (config.run.prefill, config.run.pretrain) == (5 * 126, 100)
  # Still C = 100 updates per 125-step episode, now of 16 x 32 sequences.
  assert config.run.train_ratio * 125 / (16 * 32) == pytest.approx(100)


def test_free_nats_clip_each_step():
  """The reference (training/utility.py) clips every (batch, time) step's KL at 3 nats, then
  averages: steps above 3 keep their gradient even when the mean KL is below 3."""
  from common.nn import kl as kl_lib  # pylint: disable=g-import-not-at-top
  cfg = debug_config().agent.kl
  rng = np.random.default_rng(0)
  shape = (4, 5, 3)
  prior = {'mean': np.zeros(shape, np.float32), 'std': np.ones(shape, np.float32)}
  mean = np.where(rng.uniform(size=shape[:2] + (1,)) < 0.2, 2.5, 0.1) * np.ones(shape)
  post = {'mean': mean.astype(np.float32), 'std': np.ones(shape, np.float32)}
  kl_steps = 0.5 * (mean ** 2).sum(-1)          # KL(N(m, 1) || N(0, 1)) per (batch, time)
  assert kl_steps.mean() < 3 < kl_steps.max()
  loss, _ = kl_lib.kl_loss(post, prior, cfg)
  np.testing.assert_allclose(loss, np.maximum(kl_steps, 3.0).mean(), rtol=1e-5)
  grad = jax.grad(lambda m: kl_lib.kl_loss(dict(post, mean=m), prior, cfg)[0])(post['mean'])
  want = np.where((kl_steps > 3)[..., None], mean / kl_steps.size, 0.0)
  np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-8)


def test_preprocess_quantises_to_five_bits():
  image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  out = np.asarray(agent_lib.preprocess(jnp.asarray(image), 5, jax.random.PRNGKey(0)))
  expected_low = np.array([[[(v // 8) / 32.0] for v in row] for row in image[..., 0]])
  assert np.all(out >= expected_low) and np.all(out < expected_low + 1 / 32)
  centre = np.asarray(agent_lib.preprocess(jnp.asarray(image), 5))
  np.testing.assert_allclose(centre, expected_low + 1 / 64, atol=1e-6)


def test_overshooting_kl_indexing_matches_loop():
  rssm = rssm_lib.RSSM(rssm_lib.dataclasses.replace(rssm_lib.PLANET, deter=8, hidden=8, stoch=3),
                       action_dim=2)
  params = rssm_lib.init_params(rssm, jax.random.PRNGKey(0), embed_dim=5)
  batch, length, distance = 2, 6, 3
  rng = np.random.default_rng(0)
  embed = jnp.asarray(rng.normal(size=(batch, length, 5)), jnp.float32)
  action = jnp.asarray(rng.uniform(-1, 1, (batch, length, 2)), jnp.float32)
  is_first = np.zeros((batch, length), bool)
  is_first[:, 0] = True
  is_first[1, 4] = True
  prev_action = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
  post, prior = rssm_lib.observe(rssm, params, embed, prev_action, jnp.asarray(is_first), None,
                                 jax.random.PRNGKey(1))
  kl, mask = agent_lib.overshooting_kl(rssm, params, post, jnp.asarray(is_first), action,
                                       distance, jax.random.PRNGKey(2))
  assert kl.shape == mask.shape == (batch, length, distance)
  pm, ps = np.asarray(post.stats['mean'], np.float64), np.asarray(post.stats['std'], np.float64)
  qm, qs = np.asarray(prior.stats['mean'], np.float64), np.asarray(prior.stats['std'], np.float64)
  for b in range(batch):
    for t in range(length):
      for d in range(1, distance + 1):
        valid = t + d < length and not is_first[b, t + 1:t + d + 1].any()
        assert bool(mask[b, t, d - 1]) == valid, (b, t, d)
      # One step open loop from post[t] with action[t] is the filtering prior at t + 1.
      if t + 1 < length and not is_first[b, t + 1]:
        m1, s1, m2, s2 = pm[b, t + 1], ps[b, t + 1], qm[b, t + 1], qs[b, t + 1]
        expected = np.sum(np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5)
        np.testing.assert_allclose(kl[b, t, 0], expected, rtol=1e-4, atol=1e-5)


def test_windows_start_from_the_zero_state_with_the_real_previous_action():
  """The reference's chunks carry the action that led to their first observation: a replayed
  window has one step more, whose action is the first trained step's previous action."""
  config = debug_config()
  agent = agent_lib.make_agent(config, {'image': Space(np.uint8, (64, 64, 3), 0, 255)},
                               Space(np.float32, (1,), -1.0, 1.0))
  assert agent.replay_context == 1
  batch = _synthetic_batch(2, 5, np.random.default_rng(1))
  batch['is_first'][:] = False
  batch['is_first'][1, 3] = True
  rest, prev = agent_lib.split_window(batch)
  assert rest['image'].shape[1] == 4
  np.testing.assert_array_equal(rest['reward'], batch['reward'][:, 1:])
  np.testing.assert_array_equal(prev[0], batch['action'][0, :-1])     # the real previous actions
  np.testing.assert_array_equal(prev[1, 2], 0.0)                        # an episode starts there
  np.testing.assert_array_equal(prev[1, :2], batch['action'][1, :2])
  assert not rest['is_first'][0].any()   # no reset: the zero state with the real action


def _synthetic_batch(batch, length, rng):
  data = {
      'image': rng.integers(0, 256, (batch, length, 64, 64, 3), dtype=np.uint8),
      'action': rng.uniform(-1, 1, (batch, length, 1)).astype(np.float32),
      'reward': rng.uniform(0, 1, (batch, length)).astype(np.float32),
      'is_first': np.zeros((batch, length), bool),
  }
  data['is_first'][:, 0] = True
  return data


def test_train_policy_report_on_synthetic_batches():
  config = debug_config(**{'agent.overshooting': 3})
  agent = agent_lib.make_agent(config, {'image': Space(np.uint8, (64, 64, 3), 0, 255)},
                               Space(np.float32, (1,), -1.0, 1.0))
  state = jax.jit(agent.init, compiler_options=FAST)(jax.random.PRNGKey(0))
  batch = _synthetic_batch(2, 8, np.random.default_rng(0))
  batch['image'] = np.full_like(batch['image'], 200)  # a learnable image
  train = jax.jit(agent.train, compiler_options=FAST)
  losses = []
  for _ in range(3):
    state, metrics = train(state, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    losses.append(float(metrics['image_loss']))
  assert losses[-1] < losses[0]  # fits the (fixed) batch
  policy = jax.jit(agent.policy, static_argnums=4, compiler_options=FAST)
  carry = agent.init_policy_carry(2)
  obs = {'image': batch['image'][:, 0], 'is_first': np.ones(2, bool)}
  for mode in ('train', 'eval', 'random'):
    action, carry = policy(state, carry, obs, jax.random.PRNGKey(1), mode)
    assert action.shape == (2, 1) and np.all(np.abs(np.asarray(action)) <= 1)
  report = jax.jit(agent.report, compiler_options=FAST)(state, batch)
  assert report['video/openloop'].shape == (7, 3 * 64, 2 * 64, 3)   # after the prefix step
  for name in ('deter', 'stoch', 'feat'):   # latent geometry of the whole batch
    assert -1 <= report[f'geometry/cos_{name}'] <= 1
    assert np.isfinite(report[f'geometry/dist_step_corr_{name}'])
  diagnose = agent_lib.make_diagnostics(config, {'image': Space(np.uint8, (64, 64, 3), 0, 255)},
                                        Space(np.float32, (1,), -1.0, 1.0))
  out = jax.jit(lambda s, b: diagnose(s, b, jax.random.PRNGKey(2), context=3, samples=5),
                compiler_options=FAST)(state, batch)
  # Window of 8 = 1 prefix + 3 observed + 4 predicted steps.
  np.testing.assert_allclose(out['true'], batch['reward'][:, 4:].sum(1), rtol=1e-6)
  assert out['predicted'].shape == (2,) and out['random'].shape == (2, 5)
  assert np.isfinite(np.asarray(out['random'])).all()
  assert report['video/openloop'].dtype == np.uint8
  with pytest.raises(ValueError, match='act_space'):
    agent_lib.make_agent(config, {'image': Space(np.uint8, (64, 64, 3), 0, 255)},
                         Space(np.int32, (), 0, 2))


def test_trains_on_dmc_pixels_and_resumes(tmp_path):
  logdir = str(tmp_path / 'run')
  common = ['--env', 'dmc_cartpole_balance', '--size', 'debug', '--logdir', logdir,
            '--set', 'run.log_every=0', '--set', 'run.report_every=0', '--set', 'run.save_every=0',
            '--set', 'run.eval_every=0', '--set', 'run.prefill=130',
            '--set', 'run.train_ratio=16', '--set', 'run.pretrain=2', '--set', 'env.parallel=none']
  first = planet_main.main(common + ['--steps', '200'])
  # 2 pretrain updates at step 130, then one per 64 / 16 = 4 agent steps.
  assert first['step'] == 200 and first['updates'] == 2 + (200 - 130) // 4
  with open(os.path.join(logdir, 'metrics.jsonl')) as f:
    lines = [json.loads(line) for line in f]
  losses = [line[k] for line in lines for k in line if k.startswith('train/') and 'loss' in k]
  assert losses and all(np.isfinite(losses))
  second = planet_main.main(common + ['--steps', '240'])
  assert second['start_step'] == first['step']
  assert second['updates'] > first['updates']
  # The bug-or-budget model check reads this run's checkpoint and replay.
  from experiments import diagnose_planet  # pylint: disable=g-import-not-at-top
  result = diagnose_planet.main(['model', '--logdir', logdir, '--windows', '4',
                                 '--samples', '8'])
  assert result['windows'] == 4 and result['samples'] == 8 and result['horizon'] == 4
  assert result['updates'] == second['updates']
  for key in ('mean_abs_error', 'within_start_spread', 'between_start_spread'):
    assert np.isfinite(result[key]) and result[key] >= 0, key


@pytest.mark.slow   # 2.5-6 minutes on 2 cores: the CEM planner compiles inside the loop
def test_trains_under_the_device_loop_on_mjx_pixels(tmp_path):
  pytest.importorskip('mujoco.mjx')
  # PlaNet's whole loop in one compiled program: the DMC task in MJX with pixels ray cast in
  # JAX, the CEM planner as the policy, replay on the device; checkpointed and resumed.
  logdir = str(tmp_path / 'run')
  common = ['--env', 'mjx_cartpole_swingup', '--size', 'debug', '--logdir', logdir,
            '--loop', 'device', '--set', 'run.envs=2', '--set', 'run.chunk=50',
            '--set', 'run.log_every=0', '--set', 'run.report_every=0', '--set', 'run.save_every=0',
            '--set', 'run.prefill=130', '--set', 'run.train_ratio=16', '--set', 'run.pretrain=2']
  first = planet_main.main(common + ['--steps', '300'])
  # 2 pretrain updates once training starts, then one per 64 / 16 = 4 agent steps.
  assert first['step'] == 300 and first['updates'] >= 2 + (300 - 132) // 4
  with open(os.path.join(logdir, 'scores.jsonl')) as f:
    scores = [json.loads(line) for line in f]
  # Each env's first episode: 1000 control steps at PlaNet's action repeat 8.
  assert len(scores) == 2 and all(s['length'] == 1000 // 8 for s in scores)
  second = planet_main.main(common + ['--steps', '400'])
  assert second['start_step'] == 300 and second['updates'] > first['updates']

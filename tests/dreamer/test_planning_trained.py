"""Each planner improves the Dreamer objective over its initial plan on a trained tiny model.

A debug-size DreamerV3 learns a 1-D task from random-action data: x' = clip(x + 0.3 a, -1, 1),
reward -|x' - 0.6| (400 updates). From the posteriors of held-out windows, CEM, MPPI and
gradient planning (`dreamer/planning.py`, `common/planning/planners.py`) each return a plan whose
objective in the trained model (rewards, continues, the critic at the horizon) beats the plan
they started from (zeros), and whose first action moves x toward the target.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.envs.spaces import Space
from common.planning import planners as planning
from common.run import config as config_lib
from dreamer import actor_critic as ac_lib
from dreamer import agent as agent_lib
from dreamer import configs
from dreamer import planning as dreamer_planning
from dreamer import world_model as wm_lib

B, T = 16, 8
TARGET = 0.6
UPDATES = 400
FAST = {'xla_backend_optimization_level': 0}
OBS_SPACE = {'vector': Space(np.float32, (1,)), 'reward': Space(np.float32, ()),
             'is_first': Space(bool, ()), 'is_last': Space(bool, ()),
             'is_terminal': Space(bool, ())}
ACT_SPACE = Space(np.float32, (1,), -1, 1)


def toy_batch(rng):
  """[B, T] windows of the toy task under uniform random actions, each from its own start."""
  x = np.zeros((B, T), np.float32)
  x[:, 0] = rng.uniform(-1, 1, B)
  actions = rng.uniform(-1, 1, (B, T, 1)).astype(np.float32)
  reward = np.zeros((B, T), np.float32)
  for t in range(1, T):   # batch['action'][t] follows step t; reward[t] arrives at step t
    x[:, t] = np.clip(x[:, t - 1] + 0.3 * actions[:, t - 1, 0], -1, 1)
    reward[:, t] = -np.abs(x[:, t] - TARGET)
  is_first = np.zeros((B, T), bool)
  is_first[:, 0] = True
  return {'vector': x[..., None], 'reward': reward, 'is_first': is_first,
          'is_last': np.zeros((B, T), bool), 'is_terminal': np.zeros((B, T), bool),
          'action': actions}


@pytest.fixture(scope='module')
def trained():
  config = config_lib.parse(['--env', 'gym_Pendulum-v1', '--size', 'debug'], configs.PRESETS)
  # A higher learning rate without warm-up trains the model in a few hundred updates (what is
  # tested is the planners, given a trained model, not the learning schedule).
  opt = dataclasses.replace(config.agent.opt, lr=1e-3, warmup=0)
  config = dataclasses.replace(
      config, run=dataclasses.replace(config.run, batch_size=B, batch_length=T),
      agent=dataclasses.replace(config.agent, replay_context=0, opt=opt))
  agent = agent_lib.make_agent(config, OBS_SPACE, ACT_SPACE)
  state = jax.jit(agent.init, compiler_options=FAST)(jax.random.PRNGKey(0))
  train = jax.jit(agent.train, compiler_options=FAST, donate_argnums=0)
  rng = np.random.default_rng(0)
  for _ in range(UPDATES):
    state, metrics = train(state, toy_batch(rng))
  assert np.isfinite(float(metrics['model_loss']))
  cfg = config.agent
  wm = wm_lib.make(cfg, OBS_SPACE, ACT_SPACE, jnp.float32)
  ac = ac_lib.make(cfg, ACT_SPACE, jnp.float32)
  start = agent.init_policy_carry(B)['latent']   # zeros; is_first resets it
  return cfg, wm, ac, state.params, start, toy_batch(np.random.default_rng(1))


# ~100 s of CPU to train the model: run on purpose (-m slow) with the learning tests.
@pytest.mark.slow
@pytest.mark.parametrize('kind', ['cem', 'mppi', 'gradient'])
def test_each_planner_improves_its_initial_plan_on_a_trained_model(trained, kind):
  cfg, wm, ac, params, start_latent, batch = trained
  config = dataclasses.replace(cfg.planner, horizon=5, candidates=64, top_k=8, iterations=4,
                               grad_steps=20, actor_candidates=0)
  rollout = dreamer_planning.rollout_fn(wm, ac, cfg, params)

  @functools.partial(jax.jit, compiler_options=FAST)
  def plan_and_score(obs, key):
    post = posterior(obs, key)
    init = jnp.zeros((config.horizon, 1))
    keys = jax.random.split(key, B)

    def one(start, plan_key):
      plan = planning.plan(kind, config, rollout, start, plan_key, init)
      # Both scored on the same 16 imagined futures (common random numbers), not the ones
      # the planner saw.
      futures = jax.random.split(jax.random.fold_in(plan_key, 1), 16)
      score = lambda actions: jnp.mean(jax.vmap(lambda k: planning.objective(
          rollout, start, actions[None], k)[0])(futures))
      return plan, score(init), score(plan)

    return jax.vmap(one)(post, keys)

  def posterior(obs, key):
    # The posterior after the first 4 steps of each window.
    latent, action = start_latent, jnp.zeros((B, 1))
    for t in range(4):
      step_obs = {k: obs[k][:, t] for k in OBS_SPACE}
      latent = wm_lib.observe_step(wm, params['world_model'], latent, action, step_obs,
                                   jax.random.fold_in(key, t))
      action = obs['action'][:, t]
    return latent

  obs = {k: jnp.asarray(v) for k, v in batch.items()}
  plans, before, after = plan_and_score(obs, jax.random.PRNGKey(2))
  before, after, plans = np.asarray(before), np.asarray(after), np.asarray(plans)
  assert np.all(np.isfinite(after)) and np.all(np.abs(plans) <= 1)
  # The objective improves from (nearly) every start, and on average by a clear margin.
  assert np.mean(after > before) >= 0.9, (before, after)
  assert np.mean(after - before) > 0.1 * np.mean(np.abs(before)), (before, after)
  # The first planned action (from step 3, the last observed) moves x up wherever x is well
  # below the target (from above, clipping at 1 leaves the model less to learn from).
  x = batch['vector'][:, 3, 0]
  below = x < TARGET - 0.3
  assert below.sum() >= 4 and np.mean(plans[below, 0, 0] > 0) >= 0.8, (x, plans[:, 0, 0])

"""Planning inside a Dreamer world model: `agent.policy=cem|mppi|gradient` (issue 21).

Not in any Dreamer paper: at every env step the agent plans over the RSSM's prior rollouts
from the current posterior with a planner of `common/planning/planners.py`, TD-MPC style (Hansen et
al. 2024): the objective of an action sequence a_1..a_H is

    sum_{h=1..H} w_h r(s_h) + w_{H+1} V(s_H),   w_h = prod_{j<h} gamma c(s_j)

with r the reward head, c the continue head (gamma = 1 where its targets are already
discounted, V3), and V the critic. The plan is warm-started from the previous one shifted by
a step (the actor's imagined actions after a reset), and the actor's own imagined rollouts
join the CEM and MPPI samples. Continuous actions only.
"""
import jax
import jax.numpy as jnp

from common.nn import rssm as rssm_lib
from common.planning import planners as planning
from dreamer import actor_critic as ac_lib
from dreamer import world_model as wm_lib


def check(cfg, discrete: bool):
  if cfg.policy == 'actor':
    return
  planning.check(cfg.planner)
  if discrete:
    raise ValueError(f'agent.policy={cfg.policy}: the planners search continuous actions and '
                     'this env\'s actions are discrete; use agent.policy=actor.')


def _repeat(state, count: int):
  """One env's state [...] as `count` identical candidates [count, ...]."""
  return jax.tree.map(lambda x: jnp.broadcast_to(x, (count,) + x.shape), state)


def rollout_fn(wm, ac, cfg, params: dict):
  """`rollout_fn(start RSSMState (one env), actions [C, H, A], key) -> [C, H]` contributions
  whose sum is the objective above."""
  gamma = 1.0 if cfg.continue_discount else ac_lib.discount(cfg)

  def rollout(start, actions, key):
    states, _ = rssm_lib.imagine(wm.rssm, params['world_model']['rssm'],
                                 _repeat(start, actions.shape[0]), actions, None, key)
    feat = wm.rssm.apply(params['world_model']['rssm'], states, method=rssm_lib.RSSM.feat)
    reward, cont = wm_lib.reward_continue(wm, params['world_model'], feat[:, 1:])  # [C, H]
    _, value = ac_lib.critic_value(ac, params['critic'], feat[:, -1])
    disc = gamma * cont.astype(jnp.float32)
    weight = jnp.cumprod(jnp.concatenate([jnp.ones_like(disc[:, :1]), disc], 1), 1)  # [C, H+1]
    out = weight[:, :-1] * reward.astype(jnp.float32)
    return out.at[:, -1].add(weight[:, -1] * value.astype(jnp.float32))

  return rollout


def actor_rollouts(wm, ac, params: dict, start, count: int, horizon: int, key) -> jax.Array:
  """`count` imagined action sequences [count, H, A] of the actor from one start state."""
  def policy_fn(latent, policy_key):
    feat = wm.rssm.apply(params['world_model']['rssm'], latent, method=rssm_lib.RSSM.feat)
    return ac_lib.actor_dist(ac, params['actor'], feat).sample(policy_key)

  _, actions = rssm_lib.imagine(wm.rssm, params['world_model']['rssm'], _repeat(start, count),
                                policy_fn, horizon, key)
  return actions[:, :horizon]


def plan_actions(wm, ac, cfg, params: dict, post, previous, is_first, key):
  """Plans [N, H, A] for N envs from their posteriors; previous [N, H, A] the last plans."""
  config = cfg.planner
  rollout = rollout_fn(wm, ac, cfg, params)
  extras = max(config.actor_candidates, 1)

  def one(start, last, first, env_key):
    actor_key, plan_key = jax.random.split(env_key)
    actors = actor_rollouts(wm, ac, params, start, extras, config.horizon, actor_key)
    init = jnp.where(first, actors[0], planning.shift(last))
    extra = actors if config.actor_candidates else None
    return planning.plan(cfg.policy, config, rollout, start, plan_key, init, extra)

  keys = jax.random.split(key, is_first.shape[0])
  return jax.vmap(one)(post, previous, is_first, keys)


# -- goal reaching (DINO-WM-style: plan to make the predicted latent match a goal's) --------

LATENTS = ('feat', 'stoch', 'deter')


def latent_vector(wm, wm_params: dict, state, space: str = 'feat') -> jax.Array:
  """The latent [..., D] a goal is compared in: features, stochastic state or deter state."""
  if space == 'feat':
    return wm.rssm.apply(wm_params['rssm'], state, method=rssm_lib.RSSM.feat)
  if space == 'stoch':
    return wm_lib.stoch_vector(wm, state)
  if space == 'deter':
    return state.deter
  raise ValueError(f'goal space: use one of {LATENTS}, got {space!r}.')


def goal_rollout_fn(wm, wm_params: dict, goal: jax.Array, space: str, metric: str):
  """`rollout_fn(start, actions [C, H, A], key) -> [C, H]`: minus the distance of the
  predicted latent after the last action to `goal` [D] (common.planning.planners.goal_contributions)."""
  def rollout(start, actions, key):
    states, _ = rssm_lib.imagine(wm.rssm, wm_params['rssm'], _repeat(start, actions.shape[0]),
                                 actions, None, key)
    latents = latent_vector(wm, wm_params, jax.tree.map(lambda x: x[:, 1:], states), space)
    return planning.goal_contributions(latents, goal, metric)
  return rollout


def plan_to_goal(wm, kind: str, config, wm_params: dict, post, goal: jax.Array,
                 previous: jax.Array, key, space: str = 'feat', metric: str = 'euclidean'):
  """Plans [N, H, A] toward goals [N, D] from posteriors post [N], warm-started from the
  previous plans [N, H, A] shifted by a step."""
  def one(start, target, last, env_key):
    rollout = goal_rollout_fn(wm, wm_params, target, space, metric)
    return planning.plan(kind, config, rollout, start, env_key, planning.shift(last))
  keys = jax.random.split(key, goal.shape[0])
  return jax.vmap(one)(post, goal, previous, keys)

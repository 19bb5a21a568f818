"""Cross-entropy method (CEM) planner over action sequences.

PlaNet (Hafner et al., "Learning Latent Dynamics for Planning from Pixels",
ICML 2019, Section 2 and Algorithm 2 of the appendix) plans at every
environment step by CEM (Rubinstein, 1997) in the latent space of a learned
model: a diagonal Gaussian q(a_{t:t+H}) = Normal(mean, std) over action
sequences starts at Normal(0, 1); each iteration samples C candidate
sequences, clips them to the action bounds, scores each by the sum of the
rewards the model predicts along it, and refits mean and std to the top K:

    mean, std <- mean, sqrt(var + 1e-6) of the K candidates with the highest sum_h r_h

(the reference's `control/planning.py` floor, so the belief never collapses to a point).

After the last iteration the agent executes the first action of `mean`.

The planner knows nothing about the model: it takes
`rollout_fn(state, actions [C, H, A], key) -> rewards [C, H]`, where `state` is any
pytree (e.g. an RSSM state) and `key` a fresh PRNG key for each iteration (stochastic
models sample new latents every iteration, as the reference's rollouts do), so every
world model of the suite can plan with it. Functions here are pure and never
jit themselves; the caller jits (and `plan_batch` vmaps over environments).
"""
from typing import Any, Callable, Optional

import chex
import jax
import jax.numpy as jnp

RolloutFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
STD_FLOOR = 1e-6   # added to the elites' variance (reference control/planning.py)


def _check_sizes(action_dim, horizon, candidates, top_k, iterations):
  for name, value in (('action_dim', action_dim), ('horizon', horizon),
                      ('candidates', candidates), ('top_k', top_k),
                      ('iterations', iterations)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f'cem: {name} must be a positive int, got {value!r}.')
  if top_k > candidates:
    raise ValueError(
        f'cem: top_k ({top_k}) must not exceed candidates ({candidates}); '
        'lower top_k or raise candidates.')


def _check_key(key):
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    ok = key.shape == ()
  else:
    ok = key.shape == (2,) and key.dtype == jnp.uint32
  if not ok:
    raise ValueError(f'cem: key must be one PRNG key (jax.random.key(0) or '
                     f'PRNGKey(0)), got shape {key.shape} dtype {key.dtype}.')


def refit(elites: jax.Array) -> tuple:
  """(mean, std) of elite sequences [K, H, A]: std = sqrt(var + 1e-6) as the reference."""
  return elites.mean(axis=0), jnp.sqrt(elites.var(axis=0) + STD_FLOOR)


def plan(rollout_fn: RolloutFn,
         state: Any,
         key: jax.Array,
         action_dim: int,
         horizon: int = 12,
         candidates: int = 1000,
         top_k: int = 100,
         iterations: int = 10,
         min_action: float = -1.0,
         max_action: float = 1.0,
         init_mean: Optional[jax.Array] = None,
         init_std: Optional[jax.Array] = None,
         extra: Optional[jax.Array] = None) -> jax.Array:
  """CEM over action sequences for one start state (PlaNet, Algorithm 2).

  Defaults are PlaNet's: horizon 12, 1000 candidates, top 100, 10 iterations,
  initial Normal(0, 1), actions clipped to [-1, 1], mean and sqrt(variance + 1e-6)
  refit to the clipped top-K candidates.

  Args:
    rollout_fn: `rollout_fn(state, actions [C, H, A], key) -> rewards [C, H]`; the
      predicted reward after each action of each candidate, `key` new every iteration.
      Traced once per call of the jitted caller (iterations run under `lax.scan`).
    state: any pytree handed unchanged to `rollout_fn`.
    key: PRNG key for the candidate noise.
    action_dim: A, the size of a continuous action.
    horizon: H, planning horizon.
    candidates: C, sequences sampled per iteration.
    top_k: K, elite sequences the Gaussian is refit to.
    iterations: CEM iterations.
    min_action, max_action: bounds the candidates are clipped to.
    init_mean, init_std: optional [H, A] initial belief (e.g. a shifted warm
      start); default zeros and ones.
    extra: optional [E, H, A] sequences (e.g. a policy's rollouts) that take the place of
      E of the C samples in every iteration (not in PlaNet: common/planning/planners.py's warm start).

  Returns:
    The final mean action sequence [H, A]; execute its first entry.
  """
  _check_sizes(action_dim, horizon, candidates, top_k, iterations)
  _check_key(key)
  mean = (jnp.zeros((horizon, action_dim), jnp.float32)
          if init_mean is None else jnp.asarray(init_mean, jnp.float32))
  std = (jnp.ones((horizon, action_dim), jnp.float32)
         if init_std is None else jnp.asarray(init_std, jnp.float32))
  chex.assert_shape([mean, std], (horizon, action_dim))
  num_extra = 0 if extra is None else extra.shape[0]
  if num_extra:
    chex.assert_shape(extra, (num_extra, horizon, action_dim))
    if num_extra >= candidates:
      raise ValueError(f'cem: {num_extra} extra sequences leave no room among {candidates} '
                       'candidates; pass fewer.')

  def iteration(belief, iteration_key):
    mean, std = belief
    noise_key, rollout_key = jax.random.split(iteration_key)
    noise = jax.random.normal(
        noise_key, (candidates - num_extra, horizon, action_dim), mean.dtype)
    actions = jnp.clip(mean + std * noise, min_action, max_action)
    if num_extra:
      actions = jnp.concatenate([jnp.clip(extra, min_action, max_action), actions], 0)
    rewards = rollout_fn(state, actions, rollout_key)
    chex.assert_shape(rewards, (candidates, horizon))
    returns = rewards.astype(jnp.float32).sum(axis=1)
    # Candidates whose predicted return is NaN never become elites.
    returns = jnp.where(jnp.isnan(returns), -jnp.inf, returns)
    elite_returns, elite_index = jax.lax.top_k(returns, top_k)
    return refit(actions[elite_index]), elite_returns.mean()

  keys = jax.random.split(key, iterations)
  (mean, _), _ = jax.lax.scan(iteration, (mean, std), keys)
  return mean


def plan_batch(rollout_fn: RolloutFn,
               states: Any,
               key: jax.Array,
               action_dim: int,
               **kwargs) -> jax.Array:
  """`plan` vmapped over parallel environments.

  Args:
    rollout_fn: as in `plan`, for one environment's state (no leading [N]).
    states: pytree whose leaves share a leading axis N (one per environment).
    key: one PRNG key; split into N independent ones.
    action_dim: A.
    **kwargs: forwarded to `plan` (horizon, candidates, top_k, ...). An
      `init_mean` / `init_std` given here must be [N, H, A].

  Returns:
    Mean action sequences [N, H, A]; the first actions are `[:, 0]`.
  """
  leaves = jax.tree_util.tree_leaves(states)
  if not leaves:
    raise ValueError('cem.plan_batch: states has no array leaves; pass a '
                     'pytree with a leading [N] axis per environment.')
  num = leaves[0].shape[0] if jnp.ndim(leaves[0]) else None
  if num is None or any(
      jnp.ndim(leaf) == 0 or leaf.shape[0] != num for leaf in leaves):
    raise ValueError('cem.plan_batch: every leaf of states needs the same '
                     'leading [N] axis (one entry per environment).')
  init_mean = kwargs.pop('init_mean', None)
  init_std = kwargs.pop('init_std', None)
  keys = jax.random.split(key, num)

  def single(state, key, mean, std):
    return plan(rollout_fn, state, key, action_dim, init_mean=mean,
                init_std=std, **kwargs)

  return jax.vmap(single, in_axes=(
      0, 0, None if init_mean is None else 0,
      None if init_std is None else 0))(states, keys, init_mean, init_std)

"""Planners over action sequences in a learned model: CEM, MPPI and gradient descent.

Each planner maximises, for one start state, the sum over the horizon of what
`rollout_fn(state, actions [C, H, A], key) -> contributions [C, H]` returns (the CEM
planner's contract, `common/planning/cem.py`). A world model makes the contributions its discounted
predicted rewards with a value at the horizon (TD-MPC2, Hansen et al. 2024, Sec. 3), so
the planners know nothing about any model. Actions are continuous in [min_action, max_action].

- `cem`: PlaNet's CEM (`common.planning.cem.plan`), warm-started from `init_mean` (e.g. the previous
  plan shifted by one step) and seeded each iteration with `extra` sequences (e.g. the
  actor's own rollouts, as TD-MPC2 mixes policy trajectories into its samples).
- `mppi`: TD-MPC2's MPPI: the std starts at max_std, the elites' returns are weighted by
  exp(temperature (G - max G)), the mean and std refit to the weighted elites, std kept in
  [min_std, max_std].
- `gradient`: Adam on the action sequence, through the differentiable rollout, from the
  initial mean (the returned plan is clipped to the bounds after every step).

All return the planned mean sequence [H, A]; execute its first entry. Functions are pure;
the caller jits and vmaps over environments.
"""
import dataclasses
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import optax

from common.planning import cem

PLANNERS = ('cem', 'mppi', 'gradient')


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
  """Sizes of the planners (PlaNet's CEM sizes; TD-MPC2's MPPI temperature and std bounds)."""
  horizon: int = 12
  candidates: int = 1000
  top_k: int = 100
  iterations: int = 10
  temperature: float = 0.5       # MPPI (TD-MPC2)
  min_std: float = 0.05          # MPPI (TD-MPC2)
  max_std: float = 2.0           # MPPI (TD-MPC2)
  actor_candidates: int = 24     # actor rollouts among the candidates (TD-MPC2 num_pi_trajs)
  grad_steps: int = 20           # gradient planning: Adam steps
  grad_lr: float = 0.1           # gradient planning: Adam learning rate


def check(config: PlannerConfig):
  for name in ('horizon', 'candidates', 'top_k', 'iterations', 'grad_steps'):
    value = getattr(config, name)
    if value < 1:
      raise ValueError(f'agent.planner.{name}: must be >= 1, got {value}.')
  if config.top_k > config.candidates:
    raise ValueError(f'agent.planner.top_k ({config.top_k}) must not exceed '
                     f'agent.planner.candidates ({config.candidates}).')
  if config.actor_candidates < 0 or config.actor_candidates >= config.candidates:
    raise ValueError(f'agent.planner.actor_candidates: must be in [0, candidates), got '
                     f'{config.actor_candidates}.')
  if not 0 < config.min_std <= config.max_std:
    raise ValueError('agent.planner: need 0 < min_std <= max_std, got '
                     f'{config.min_std}, {config.max_std}.')


def objective(rollout_fn, state, actions: jax.Array, key: jax.Array) -> jax.Array:
  """Summed contributions [C] of candidates [C, H, A]; NaN scores as -inf."""
  total = rollout_fn(state, actions, key).astype(jnp.float32).sum(-1)
  return jnp.where(jnp.isnan(total), -jnp.inf, total)


def mppi(rollout_fn, state, key, init_mean, init_std, extra=None, *, candidates=1000,
         top_k=100, iterations=10, temperature=0.5, min_std=0.05, max_std=2.0,
         min_action=-1.0, max_action=1.0) -> jax.Array:
  """TD-MPC2's MPPI over [H, A] sequences; `extra` [E, H, A] joins every iteration's samples."""
  chex.assert_equal_shape([init_mean, init_std])
  num_extra = 0 if extra is None else extra.shape[0]

  def iteration(belief, iteration_key):
    mean, std = belief
    noise_key, rollout_key = jax.random.split(iteration_key)
    noise = jax.random.normal(noise_key, (candidates - num_extra,) + mean.shape, mean.dtype)
    actions = jnp.clip(mean + std * noise, min_action, max_action)
    if num_extra:
      actions = jnp.concatenate([jnp.clip(extra, min_action, max_action), actions], 0)
    returns = objective(rollout_fn, state, actions, rollout_key)
    elite_returns, index = jax.lax.top_k(returns, top_k)
    elites = actions[index]
    score = jnp.exp(temperature * (elite_returns - elite_returns.max()))
    score = score / score.sum()
    mean = jnp.einsum('k,kha->ha', score, elites)
    var = jnp.einsum('k,kha->ha', score, jnp.square(elites - mean))
    return (mean, jnp.clip(jnp.sqrt(var), min_std, max_std)), None

  (mean, _), _ = jax.lax.scan(iteration, (init_mean, init_std),
                              jax.random.split(key, iterations))
  return mean


def gradient(rollout_fn, state, key, init_mean, *, steps=20, lr=0.1, min_action=-1.0,
             max_action=1.0) -> jax.Array:
  """Adam ascent on the objective of one sequence [H, A], from `init_mean`."""
  optimizer = optax.adam(lr)

  def step(carry, step_key):
    actions, opt_state = carry
    grads = jax.grad(lambda a: -objective(rollout_fn, state, a[None], step_key)[0])(actions)
    grads = jnp.nan_to_num(grads)
    updates, opt_state = optimizer.update(grads, opt_state, actions)
    actions = jnp.clip(optax.apply_updates(actions, updates), min_action, max_action)
    return (actions, opt_state), None

  init_mean = jnp.clip(init_mean.astype(jnp.float32), min_action, max_action)
  (actions, _), _ = jax.lax.scan(step, (init_mean, optimizer.init(init_mean)),
                                 jax.random.split(key, steps))
  return actions


def plan(kind: str, config: PlannerConfig, rollout_fn, state, key, init_mean,
         extra: Optional[jax.Array] = None, min_action=-1.0, max_action=1.0) -> jax.Array:
  """One plan [H, A] of planner `kind` ('cem' | 'mppi' | 'gradient') for one start state.

  init_mean [H, A]: the warm start (shifted previous plan, or the actor's rollout);
  extra [E, H, A]: sequences scored beside the samples of every CEM/MPPI iteration.
  """
  bounds = dict(min_action=min_action, max_action=max_action)
  init_std = jnp.ones_like(init_mean)   # PlaNet's Normal(0, 1)
  if kind == 'cem':
    return cem.plan(rollout_fn, state, key, init_mean.shape[-1], horizon=config.horizon,
                    candidates=config.candidates, top_k=config.top_k,
                    iterations=config.iterations, init_mean=init_mean, init_std=init_std,
                    extra=extra, **bounds)
  if kind == 'mppi':
    return mppi(rollout_fn, state, key, init_mean, jnp.full_like(init_mean, config.max_std),
                extra,
                candidates=config.candidates, top_k=config.top_k,
                iterations=config.iterations, temperature=config.temperature,
                min_std=config.min_std, max_std=config.max_std, **bounds)
  if kind == 'gradient':
    return gradient(rollout_fn, state, key, init_mean, steps=config.grad_steps,
                    lr=config.grad_lr, **bounds)
  raise ValueError(f'planner: use one of {PLANNERS}, got {kind!r}.')


METRICS = ('euclidean', 'cosine')


def distance(x: jax.Array, goal: jax.Array, metric: str = 'euclidean') -> jax.Array:
  """Distance [...] between latents x [..., D] and a goal [D] (DINO-WM's goal cost):
  Euclidean, or 1 - cosine similarity."""
  x, goal = x.astype(jnp.float32), goal.astype(jnp.float32)
  if metric == 'euclidean':
    return jnp.sqrt(jnp.sum(jnp.square(x - goal), -1) + 1e-12)
  if metric == 'cosine':
    norms = jnp.sqrt((jnp.sum(jnp.square(x), -1) + 1e-12) * (jnp.sum(jnp.square(goal)) + 1e-12))
    return 1.0 - jnp.sum(x * goal, -1) / norms
  raise ValueError(f'goal metric: use one of {METRICS}, got {metric!r}.')


def goal_contributions(latents: jax.Array, goal: jax.Array, metric: str = 'euclidean',
                       every_step: bool = True):
  """[C, H] minus the distances of the predicted latents [C, H, D] to the goal [D].

  every_step: the cost of every predicted step, so a receding-horizon plan gets there as
  soon as it can; False keeps only the last (DINO-WM's open-loop cost), under which
  replanning may postpone reaching a goal that stays within the horizon."""
  cost = -distance(latents, goal, metric)
  if every_step:
    return cost
  return jnp.zeros_like(cost).at[:, -1].set(cost[:, -1])


def shift(plan_: jax.Array) -> jax.Array:
  """A plan [..., H, A] moved one step on, zeros after its end: the next step's warm start
  (TD-MPC2 tdmpc2.py `mean[:-1] = self._prev_mean[1:]`)."""
  return jnp.concatenate([plan_[..., 1:, :], jnp.zeros_like(plan_[..., -1:, :])], -2)

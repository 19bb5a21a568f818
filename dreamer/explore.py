"""Plan2Explore (Sekar et al., "Planning to Explore via Self-Supervised World Models", ICML
2020): an ensemble of one-step predictors whose disagreement is an intrinsic reward.

K MLPs each predict, from the posterior features and the action taken at step t, the target
of step t + offset (the stochastic state by default, as danijar/dreamerv2 07d906e
`disag_target: stoch`). Their disagreement about an imagined transition,

    r_intr(s_t, a_t) = mean_d Var_k[ mu_k(s_t, a_t)_d ]       (the paper's Eq. 5)

is the reward of an exploration actor and critic trained in imagination like the task's; the
exploration actor collects the data (task-agnostic), and the task actor learns from the same
replay with the reward head, as in the reference code's `expl_behavior: Plan2Explore`.
"""
import dataclasses

import chex
import jax
import jax.numpy as jnp

from common.planning import geometry
from dreamer import networks

TARGETS = ('stoch', 'deter', 'feat')


@dataclasses.dataclass(frozen=True)
class ExploreConfig:
  """`agent.explore.*`; kind 'none' trains no exploration behaviour (every Dreamer paper)."""
  kind: str = 'none'             # 'none' or 'plan2explore'
  models: int = 10               # ensemble members (dreamerv2 `disag_models`)
  target: str = 'stoch'          # what they predict (`disag_target`)
  offset: int = 1                # steps ahead (`disag_offset`)
  action_cond: bool = True       # the action is an input (`disag_action_cond`)
  intr_scale: float = 1.0        # weight of the disagreement (`expl_intr_scale`)
  extr_scale: float = 0.0        # weight of the reward head's reward (`expl_extr_scale`)


def check(config: ExploreConfig):
  if config.kind not in ('none', 'plan2explore'):
    raise ValueError(f"agent.explore.kind: use 'none' or 'plan2explore', got {config.kind!r}.")
  if config.kind == 'none':
    return
  if config.models < 2:
    raise ValueError(f'agent.explore.models: disagreement needs >= 2 members, got '
                     f'{config.models}.')
  if config.target not in TARGETS:
    raise ValueError(f'agent.explore.target: use one of {TARGETS}, got {config.target!r}.')
  if config.offset < 1:
    raise ValueError(f'agent.explore.offset: must be >= 1, got {config.offset}.')


def make_member(critic_cfg, target_dim: int, dtype) -> networks.Head:
  """One ensemble member: an MLP of the critic's depth and width, a linear mean output."""
  return networks.Head(out_dim=target_dim, layers=critic_cfg.layers, units=critic_cfg.units,
                       act=critic_cfg.act, norm=critic_cfg.norm, outscale=1.0,
                       winit=critic_cfg.winit, norm_eps=critic_cfg.norm_eps, dtype=dtype)


def init_ensemble(member: networks.Head, models: int, key, input_dim: int):
  """Parameters of `models` members stacked on a leading axis (one vmapped MLP)."""
  inputs = jnp.zeros((1, input_dim), jnp.float32)
  keys = jax.random.split(key, models)
  return jax.vmap(lambda k: member.init(k, inputs)['params'])(keys)


def predict(member: networks.Head, params, inputs: jax.Array) -> jax.Array:
  """Every member's prediction [K, ..., D] for inputs [..., I]."""
  return jax.vmap(lambda p: member.apply({'params': p}, inputs))(params).astype(jnp.float32)


def inputs_of(config: ExploreConfig, feat: jax.Array, action: jax.Array) -> jax.Array:
  if config.action_cond:
    return jnp.concatenate([feat, action.astype(feat.dtype)], -1)
  return feat


def disagreement(member, params, inputs: jax.Array) -> jax.Array:
  """mean_d Var_k of the members' predictions [...] at inputs [..., I]."""
  preds = predict(member, params, inputs)
  return preds.var(0).mean(-1)


def ensemble_loss(member, params, inputs: jax.Array, targets: jax.Array, is_first: jax.Array,
                  offset: int):
  """Sum over members of the squared-error NLL (unit variance) of predicting
  targets[:, t + offset] from inputs[:, t], averaged over the pairs within one episode;
  inputs [B, T, I], targets [B, T, D], is_first [B, T]."""
  chex.assert_rank([inputs, targets, is_first], [3, 3, 2])
  preds = predict(member, params, jax.lax.stop_gradient(inputs[:, :-offset]))
  target = jax.lax.stop_gradient(targets[:, offset:]).astype(jnp.float32)
  weight = geometry.no_start_within(is_first, 1, offset).astype(jnp.float32)
  nll = 0.5 * jnp.square(preds - target).sum(-1)                      # [K, B, T - offset]
  return ((nll * weight).sum((1, 2)) / jnp.maximum(weight.sum(), 1.0)).sum()


def target_dim(config: ExploreConfig, rssm_config, feat_size: int) -> int:
  if config.target == 'deter':
    return rssm_config.deter
  if config.target == 'feat':
    return feat_size
  return rssm_config.stoch * (rssm_config.classes or 1)

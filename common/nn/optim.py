"""Optimisers as optax chains.

'adam' (PlaNet, DreamerV1/V2): global-norm clipping, Adam, learning rate (with
  optional linear warmup), and optional weight decay as the DreamerV2 reference
  applies it (`common/tfutils.py` Optimizer): every parameter is multiplied by
  (1 - weight_decay) each step, independent of the learning rate:
  w <- (1 - wd) w - lr adam(g). Typical: V1 lr 6e-4 eps 1e-7 clip 100; V2 world model lr 1e-4
  (2e-4 Atari) eps 1e-5 clip 100 weight_decay 1e-6; PlaNet lr 1e-3 eps 1e-4 clip 1000.
'dreamerv3' (DreamerV3, Hafner et al. 2023, App. B "Optimizer"):
  1. adaptive gradient clipping per parameter tensor:
     g <- g / max(1, ||g|| / (agc * max(agc_eps, ||w||)))
  2. RMS scaling: v <- beta2 v + (1 - beta2) g^2, g <- g / (sqrt(v / (1 - beta2^t)) + eps)
  3. momentum: m <- momentum m + (1 - momentum) g, g <- m / (1 - momentum^t)
  4. learning rate lr * min(1, step / warmup) (step counts from 0, so the
     first update is zero, as optax.linear_schedule(0, lr, warmup) gives).
  Defaults: lr 4e-5, agc 0.3, eps 1e-20, beta2 0.999, momentum 0.9, warmup 1000.

optax's `adaptive_grad_clip` (Brock et al. 2021) clips unit-wise (per output
row of a kernel, per element of a bias), while DreamerV3 clips each whole
tensor by its whole-tensor norm, so `clip_by_agc` below implements V3's rule.
The returned transformations need `params` in `update(grads, state, params)`.
"""
import dataclasses
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Optimiser hyperparameters. Defaults: DreamerV3."""
  kind: str = 'dreamerv3'    # 'adam' (PlaNet/V1/V2) | 'dreamerv3'
  lr: float = 4e-5           # learning rate after warmup
  eps: float = 1e-20         # epsilon of the RMS / Adam denominator
  clip: float = 0.0          # global-norm clipping threshold (0 = off); V1/V2: 100
  agc: float = 0.3           # adaptive gradient clipping ratio (0 = off); 'dreamerv3' only
  agc_eps: float = 1e-3      # floor of the parameter norm in AGC
  warmup: int = 1000         # linear warmup steps (0 = constant lr)
  momentum: float = 0.9      # first-moment decay (Adam's beta1 / V3's momentum)
  beta2: float = 0.999       # second-moment decay
  weight_decay: float = 0.0  # every parameter *= (1 - weight_decay) per step, not times lr (V2)

  def __post_init__(self):
    if self.kind not in ('adam', 'dreamerv3'):
      raise ValueError(f"OptimConfig.kind: unknown {self.kind!r}; use 'adam' or 'dreamerv3'.")
    if not self.lr > 0:
      raise ValueError(f'OptimConfig.lr: must be > 0, got {self.lr}.')
    for name in ('eps', 'clip', 'agc', 'agc_eps', 'warmup', 'weight_decay'):
      if getattr(self, name) < 0:
        raise ValueError(f'OptimConfig.{name}: must be >= 0, got {getattr(self, name)}.')
    for name in ('momentum', 'beta2'):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f'OptimConfig.{name}: must be in [0, 1), got {getattr(self, name)}.')


def clip_by_agc(clip: float = 0.3, pmin: float = 1e-3) -> optax.GradientTransformation:
  """DreamerV3's adaptive gradient clipping, per tensor (App. B).

  u <- u / max(1, ||u||_2 / (clip * max(pmin, ||w||_2))), norms over the whole tensor.
  """
  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('clip_by_agc: params are required; call update(grads, state, params).')

    def one(update, param):
      update_norm = jnp.linalg.norm(update.reshape(-1).astype(jnp.float32))
      param_norm = jnp.linalg.norm(param.reshape(-1).astype(jnp.float32))
      upper = clip * jnp.maximum(pmin, param_norm)
      return (update / jnp.maximum(1.0, update_norm / upper)).astype(update.dtype)

    return jax.tree.map(one, updates, params), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


class MomentumState(NamedTuple):
  count: chex.Array
  mu: optax.Updates


def scale_by_momentum(beta: float = 0.9) -> optax.GradientTransformation:
  """Bias-corrected momentum: m <- beta m + (1 - beta) u, u <- m / (1 - beta^t)."""
  def init_fn(params):
    return MomentumState(jnp.zeros([], jnp.int32),
                         jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params))

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    mu = jax.tree.map(lambda m, u: beta * m + (1 - beta) * u, state.mu, updates)
    correction = 1 - beta ** count.astype(jnp.float32)
    return jax.tree.map(lambda m: m / correction, mu), MomentumState(count, mu)

  return optax.GradientTransformation(init_fn, update_fn)


def _schedule(config: OptimConfig):
  if config.warmup:
    return optax.linear_schedule(0.0, config.lr, config.warmup)
  return config.lr


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
  """The optax chain for `config` (see the module docstring for the update rules)."""
  if not isinstance(config, OptimConfig):
    raise TypeError(f'config: expected an OptimConfig, got {type(config).__name__}.')
  chain = []
  if config.clip:
    chain.append(optax.clip_by_global_norm(config.clip))
  if config.kind == 'adam':
    chain.append(optax.scale_by_adam(b1=config.momentum, b2=config.beta2, eps=config.eps))
  else:
    if config.agc:
      chain.append(clip_by_agc(config.agc, config.agc_eps))
    chain.append(optax.scale_by_rms(decay=config.beta2, eps=config.eps, eps_in_sqrt=False,
                                    bias_correction=True))
    if config.momentum:
      chain.append(scale_by_momentum(config.momentum))
  chain.append(optax.scale_by_learning_rate(_schedule(config)))
  if config.weight_decay:  # after the learning rate: the decay does not scale with it
    chain.append(optax.add_decayed_weights(-config.weight_decay))
  return optax.chain(*chain)

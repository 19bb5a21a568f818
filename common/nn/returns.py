"""Returns, the DreamerV3 return normaliser and slow-target helpers. Pure functions; the caller jits."""
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


def lambda_return(reward: chex.Array, value: chex.Array, discount: chex.Array,
                  lam: float | chex.Array, unroll: int = 1) -> chex.Array:
  """TD(lambda) returns over an imagined trajectory (DreamerV1, Eq. 6; V2, Eq. 4; V3, Eq. 7).

    R[T-1] = reward[T-1] + discount[T-1] * value[T]
    R[t]   = reward[t] + discount[t] * ((1 - lam) * value[t+1] + lam * R[t+1])

  Time-major. `discount` is gamma times the continue flag, so a terminal step
  (discount 0) cuts the bootstrap from everything after it.

  Args:
    reward: [T, ...] reward for the transition t -> t+1.
    value: [T+1, ...] value estimates; value[T] is the bootstrap.
    discount: [T, ...].
    lam: scalar or broadcastable to [T, ...].
    unroll: steps per iteration of the scan (>= T unrolls it fully, as the reference's Python
      loop is); the values are the same.
  Returns:
    [T, ...] lambda-returns.
  """
  reward, value, discount = jnp.asarray(reward), jnp.asarray(value), jnp.asarray(discount)
  if reward.ndim < 1:
    raise ValueError(f'lambda_return: `reward` must be time-major [T, ...], got shape {reward.shape}.')
  chex.assert_shape(discount, reward.shape, custom_message=(
      'lambda_return: `discount` must have the shape of `reward` [T, ...].'))
  chex.assert_shape(value, (reward.shape[0] + 1,) + reward.shape[1:], custom_message=(
      'lambda_return: `value` must be [T+1, ...] (the last entry is the bootstrap) with `reward` [T, ...].'))
  lam = jnp.broadcast_to(jnp.asarray(lam, reward.dtype), reward.shape)

  def step(next_return, inputs):
    reward_t, discount_t, value_tp1, lam_t = inputs
    ret = reward_t + discount_t * ((1 - lam_t) * value_tp1 + lam_t * next_return)
    return ret, ret

  _, returns = jax.lax.scan(step, value[-1], (reward, discount, value[1:], lam), reverse=True,
                           unroll=max(1, min(unroll, reward.shape[0])))
  return returns


class PercentileNormalizerState(NamedTuple):
  """EMA of the low and high return percentiles (DreamerV3, Eq. 8); float32 scalars."""
  low: chex.Array
  high: chex.Array


def percentile_normalizer_init() -> PercentileNormalizerState:
  """Both percentiles start at 0, as in DreamerV3's reference code (no debiasing)."""
  return PercentileNormalizerState(low=jnp.zeros((), jnp.float32), high=jnp.zeros((), jnp.float32))


def percentile_normalizer_update(state: PercentileNormalizerState, x: chex.Array, rate: float = 0.01,
                                 low: float = 5.0, high: float = 95.0) -> PercentileNormalizerState:
  """low <- (1 - rate) low + rate Per(x, 5);  high <- (1 - rate) high + rate Per(x, 95)  (DreamerV3, Eq. 8).

  x: returns of any shape (all entries pooled; gradients stopped).
  """
  if not isinstance(state, PercentileNormalizerState):
    raise TypeError(f'percentile_normalizer_update: state must be a PercentileNormalizerState, got {type(state).__name__}.')
  if not 0.0 <= low <= high <= 100.0:
    raise ValueError(f'percentile_normalizer_update: need 0 <= low <= high <= 100, got {low}, {high}.')
  x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32)).reshape(-1)
  if x.size == 0:
    raise ValueError('percentile_normalizer_update: `x` is empty.')
  low_x = jnp.percentile(x, low)
  high_x = jnp.percentile(x, high)
  return PercentileNormalizerState(
      low=(1 - rate) * state.low + rate * low_x,
      high=(1 - rate) * state.high + rate * high_x)


def percentile_normalizer_stats(state: PercentileNormalizerState, limit: float = 1.0) -> tuple:
  """(offset, scale) = (low, max(limit, high - low))  (DreamerV3, Eq. 8).

  Normalise returns as (R - offset) / scale; advantages as (R - v) / scale (offset cancels).
  Scale never drops below `limit`, so small returns are not amplified.
  """
  offset = state.low
  scale = jnp.maximum(limit, state.high - state.low)
  return offset, scale


def ema_update(target, online, rate: float | chex.Array):
  """target <- (1 - rate) * target + rate * online, leaf by leaf (Polyak averaging)."""
  chex.assert_trees_all_equal_shapes(target, online, custom_message=(
      'ema_update: `target` and `online` must be pytrees of the same structure and shapes.'))
  return jax.tree_util.tree_map(lambda t, o: (1 - rate) * t + rate * o, target, online)


def slow_target_update(target, online, step: chex.Array, rate: float, every: int):
  """Slow critic target (DreamerV2: rate 1 every 100 updates; DreamerV3: rate 0.02 every update).

  Applies `ema_update(target, online, rate)` when step % every == 0, otherwise returns
  target unchanged. `step` may be traced. Initialise the target as a copy of online.
  """
  if int(every) < 1:
    raise ValueError(f'slow_target_update: every must be >= 1, got {every}.')
  updated = ema_update(target, online, rate)
  do = (jnp.asarray(step) % every) == 0
  return jax.tree_util.tree_map(lambda u, t: jnp.where(do, u, t), updated, target)

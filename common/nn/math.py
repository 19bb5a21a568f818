"""Symlog squashing and two-hot encodings (DreamerV3, Hafner et al. 2023, Sec. 2 / Eq. 9-11).

Pure functions of arrays; they never jit themselves.
"""
import chex
import jax.numpy as jnp
import numpy as np


def symlog(x: chex.Array) -> chex.Array:
  """symlog(x) = sign(x) * log(|x| + 1)  (DreamerV3, Eq. 9). Any shape -> same shape."""
  return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: chex.Array) -> chex.Array:
  """symexp(x) = sign(x) * (exp(|x|) - 1), the inverse of `symlog` (DreamerV3, Eq. 9)."""
  return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def symexp_bins(num: int = 255, low: float = -20.0, high: float = 20.0) -> chex.Array:
  """Two-hot bin centres B = symexp(linspace(low, high, num))  (DreamerV3, Sec. 2, Eq. 11).

  Evenly spaced in symlog space, so they are dense near zero and reach
  +/- symexp(20) ~ 4.9e8 in raw space. With an odd `num` and symmetric
  `low`/`high`, zero is a bin and the bins are exactly antisymmetric.

  Returns: float32 [num], increasing.
  """
  if int(num) < 2:
    raise ValueError(f'symexp_bins: num must be >= 2, got {num}.')
  if not low < high:
    raise ValueError(f'symexp_bins: need low < high, got low={low}, high={high}.')
  # A constant: computed in float64 NumPy (no tracing, no device ops), then cast.
  grid = np.linspace(low, high, int(num), dtype=np.float64)
  bins = np.sign(grid) * np.expm1(np.abs(grid))
  # Exactly antisymmetric when the grid is symmetric, so a uniform distribution
  # has a mean of exactly zero (see distributions.TwoHot.mean).
  if low == -high:
    bins = 0.5 * (bins - bins[::-1])
  return jnp.asarray(bins, jnp.float32)


def twohot(x: chex.Array, bins: chex.Array) -> chex.Array:
  """Two-hot encoding of x over increasing `bins`  (DreamerV3, Eq. 10).

  The weight is split between the two neighbouring bins b_k <= x < b_{k+1}
  so that sum_j w_j b_j = x:  w_k = (b_{k+1} - x) / (b_{k+1} - b_k), w_{k+1} = 1 - w_k.
  Values outside [b_0, b_{K-1}] put all weight on the nearest outer bin.
  The encoding is linear in the space the bins live in; here that is raw space
  with `symexp_bins`, so the weighted mean recovers x exactly (up to float error).

  Args:
    x: targets, any shape [...].
    bins: [K] increasing bin centres (K >= 2).
  Returns:
    [..., K] weights summing to 1, dtype of `bins`.
  """
  chex.assert_rank(bins, 1, custom_message='twohot: `bins` must be a 1-D array [K].')
  num = bins.shape[0]
  if num < 2:
    raise ValueError(f'twohot: `bins` needs at least 2 entries, got {num}.')
  x = jnp.asarray(x, bins.dtype)
  # Index of the last bin <= x (clipped), and the first bin > x (clipped).
  # A comparison count (not searchsorted's loop): the output is [..., K] anyway.
  below = jnp.clip((bins <= x[..., None]).sum(-1) - 1, 0, num - 1)
  above = jnp.clip(below + 1, 0, num - 1)
  lo_val, hi_val = bins[below], bins[above]
  width = hi_val - lo_val
  same = width == 0
  weight_below = jnp.where(same, 1.0, (hi_val - x) / jnp.where(same, 1.0, width))
  weight_below = jnp.clip(weight_below, 0.0, 1.0)
  weight_above = 1.0 - weight_below
  return (_one_hot(below, num, bins.dtype) * weight_below[..., None] +
          _one_hot(above, num, bins.dtype) * weight_above[..., None])


def _one_hot(index, num, dtype):
  return (index[..., None] == jnp.arange(num)).astype(dtype)

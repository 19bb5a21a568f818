"""common.nn.math against NumPy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn import math as cmath


def np_twohot(x, bins):
  """Plain loop: find the bracketing bins and split the weight linearly."""
  out = np.zeros(x.shape + (len(bins),), np.float64)
  for idx, value in np.ndenumerate(x):
    if value <= bins[0]:
      out[idx + (0,)] = 1.0
    elif value >= bins[-1]:
      out[idx + (len(bins) - 1,)] = 1.0
    else:
      k = 0
      while not bins[k] <= value < bins[k + 1]:
        k += 1
      w = (bins[k + 1] - value) / (bins[k + 1] - bins[k])
      out[idx + (k,)] += w
      out[idx + (k + 1,)] += 1 - w
  return out


def test_symlog_symexp_match_numpy_and_invert():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=50) * 10.0 ** rng.integers(-3, 6, 50),
                      [0.0, 1e6, -1e6, 1.0, -1.0]]).astype(np.float32)
  ref = np.sign(x.astype(np.float64)) * np.log(np.abs(x.astype(np.float64)) + 1)
  out, round_trip = jax.jit(lambda x: (cmath.symlog(x), cmath.symexp(cmath.symlog(x))))(x)
  np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(round_trip, x, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(cmath.symlog(x), out, rtol=1e-6)  # no jit


def test_symexp_bins():
  bins = np.asarray(cmath.symexp_bins(255, -20.0, 20.0))
  grid = np.linspace(-20, 20, 255)
  ref = np.sign(grid) * (np.exp(np.abs(grid)) - 1)
  assert bins.shape == (255,) and bins.dtype == np.float32
  np.testing.assert_allclose(bins, ref, rtol=1e-5)
  assert bins[127] == 0.0 and np.all(np.diff(bins) > 0)
  np.testing.assert_array_equal(bins, -bins[::-1])
  with pytest.raises(ValueError, match='num'):
    cmath.symexp_bins(1)


def test_twohot_matches_loop_reference():
  rng = np.random.default_rng(1)
  bins = np.asarray(cmath.symexp_bins(41, -8.0, 8.0))
  x = np.sign(rng.normal(size=(6, 7))) * np.expm1(rng.uniform(0, 9, (6, 7)))
  x[0, :5] = [0.0, bins[3], bins[-1] + 5.0, bins[0] - 5.0, bins[20 + 1]]  # on bins, outside
  x = x.astype(np.float32)
  weights = np.asarray(jax.jit(cmath.twohot)(x, bins))
  ref = np_twohot(x.astype(np.float64), bins.astype(np.float64))
  assert weights.shape == (6, 7, 41)
  np.testing.assert_allclose(weights, ref, atol=2e-5)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert (np.count_nonzero(weights, -1) <= 2).all()
  np.testing.assert_allclose(cmath.twohot(x[:2, :3], bins), weights[:2, :3], atol=1e-7)  # no jit
  # The weighted mean recovers x inside the bin range.
  inside = np.clip(x, bins[0], bins[-1])
  np.testing.assert_allclose((weights * bins).sum(-1), inside, rtol=1e-5, atol=1e-5)


def test_twohot_round_trip_of_large_rewards():
  bins = cmath.symexp_bins()
  x = np.array([1e6, -1e6, 123456.7, -0.37, 0.0], np.float32)
  weights = jax.jit(cmath.twohot)(x, bins)
  np.testing.assert_allclose((np.asarray(weights, np.float64) * np.asarray(bins, np.float64)).sum(-1),
                             x, rtol=1e-6, atol=1e-6)


def test_twohot_bad_bins():
  with pytest.raises(AssertionError, match='bins'):
    jax.eval_shape(cmath.twohot, jnp.zeros(3), jnp.zeros((2, 3)))

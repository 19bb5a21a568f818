"""common/planning/geometry.py against NumPy loops over every triple and pair."""
import jax
import numpy as np
import pytest

from common.planning import geometry


def _episode(is_first, b, t):
  """Index of the episode step t of row b belongs to (counting starts up to t)."""
  return int(np.sum(is_first[b, 1:t + 1]))


def _numpy_cosines(z, is_first):
  out = []
  for b in range(z.shape[0]):
    for t in range(z.shape[1] - 2):
      if _episode(is_first, b, t) != _episode(is_first, b, t + 2):
        continue
      v1, v2 = z[b, t + 1] - z[b, t], z[b, t + 2] - z[b, t + 1]
      out.append(v1 @ v2 / np.sqrt((v1 @ v1 + geometry.EPS) * (v2 @ v2 + geometry.EPS)))
  return np.array(out)


def _batch(seed=0, shape=(3, 12, 5)):
  rng = np.random.default_rng(seed)
  z = np.cumsum(rng.normal(size=shape), 1).astype(np.float32)
  is_first = rng.random(shape[:2]) < 0.15
  is_first[:, 0] = True
  return z, is_first


def test_straightening_loss_matches_numpy_loop_and_skips_episode_boundaries():
  z, is_first = _batch()
  cosines = _numpy_cosines(z, is_first)
  assert 0 < len(cosines) < 3 * 10   # some triples were dropped at boundaries
  np.testing.assert_allclose(geometry.straightening_loss(z, is_first), np.mean(1 - cosines),
                             rtol=1e-5)
  diag = geometry.diagnostics({'feat': z}, is_first)
  np.testing.assert_allclose(diag['geometry/cos_feat'], np.mean(cosines), rtol=1e-5)


def test_straight_line_has_zero_loss_and_a_reversal_has_two():
  t = np.arange(10, dtype=np.float32)[None, :, None]
  line = t * np.array([1.0, -2.0, 0.5], np.float32)
  accelerating = np.square(t) * np.array([1.0, 2.0], np.float32)   # same direction, any speed
  np.testing.assert_allclose(geometry.straightening_loss(line), 0.0, atol=1e-6)
  np.testing.assert_allclose(geometry.straightening_loss(accelerating[:, 1:]), 0.0, atol=1e-6)
  zigzag = np.array([0, 1, 0, 1, 0], np.float32)[None, :, None]
  np.testing.assert_allclose(geometry.straightening_loss(zigzag), 2.0, atol=1e-6)


def test_loss_gradient_is_finite_at_standing_still():
  z = np.zeros((1, 6, 4), np.float32)
  grad = jax.grad(lambda x: geometry.straightening_loss(x))(z)
  assert np.all(np.isfinite(grad))


def test_distance_step_correlation_matches_numpy_pearson():
  z, is_first = _batch(1, (2, 14, 3))
  gaps, dists = [], []
  for b in range(z.shape[0]):
    for t in range(z.shape[1]):
      for k in range(1, 6):
        if t + k < z.shape[1] and _episode(is_first, b, t) == _episode(is_first, b, t + k):
          gaps.append(k)
          dists.append(np.linalg.norm(z[b, t + k] - z[b, t]))
  expected = np.corrcoef(gaps, dists)[0, 1]
  got = geometry.distance_step_correlation(z, is_first, max_gap=5)
  np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_a_straight_constant_speed_path_correlates_perfectly():
  z = np.arange(20, dtype=np.float32)[None, :, None] * np.ones((2, 1, 3), np.float32)
  assert geometry.distance_step_correlation(z, max_gap=8) == pytest.approx(1.0, abs=1e-5)

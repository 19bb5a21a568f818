"""common.nn.returns against NumPy loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn import returns


def np_lambda_return(reward, value, discount, lam):
  T = reward.shape[0]
  out = np.zeros_like(reward, dtype=np.float64)
  for t in reversed(range(T)):
    if t == T - 1:
      out[t] = reward[t] + discount[t] * value[T]
    else:
      out[t] = reward[t] + discount[t] * ((1 - lam) * value[t + 1] + lam * out[t + 1])
  return out


def test_lambda_return_matches_loop_with_terminals():
  rng = np.random.default_rng(0)
  T, B = 7, 3
  reward = rng.normal(size=(T, B)).astype(np.float32)
  value = rng.normal(size=(T + 1, B)).astype(np.float32)
  discount = np.full((T, B), 0.99, np.float32)
  discount[3, 0] = 0.0  # terminal in the middle
  discount[5, 2] = 0.0
  jitted = jax.jit(returns.lambda_return)
  for lam in (0.95, 0.0, 1.0):
    out = jitted(reward, value, discount, lam)
    np.testing.assert_allclose(out, np_lambda_return(reward, value, discount, lam), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(returns.lambda_return(reward, value, discount, 1.0), out, rtol=1e-6)  # no jit
  # Before the terminal at t=3 (env 0), nothing after it leaks in with lam=1.
  np.testing.assert_allclose(out[:4, 0], [reward[t:4, 0] @ (0.99 ** np.arange(4 - t)) for t in range(4)], rtol=1e-5)


def test_lambda_return_bad_shapes():
  with pytest.raises(AssertionError, match='value'):
    returns.lambda_return(jnp.zeros((5, 2)), jnp.zeros((5, 2)), jnp.zeros((5, 2)), 0.95)
  with pytest.raises(AssertionError, match='discount'):
    returns.lambda_return(jnp.zeros((5, 2)), jnp.zeros((6, 2)), jnp.zeros((5,)), 0.95)


def test_percentile_normalizer_matches_loop_and_zero_range():
  rng = np.random.default_rng(1)
  batches = [rng.normal(size=(4, 6)) * 10 + 3 for _ in range(5)]
  update = jax.jit(returns.percentile_normalizer_update)
  state = returns.percentile_normalizer_init()
  low = high = 0.0
  for batch in batches:
    state = update(state, batch.astype(np.float32))
    low = 0.99 * low + 0.01 * np.percentile(batch, 5)
    high = 0.99 * high + 0.01 * np.percentile(batch, 95)
  np.testing.assert_allclose([state.low, state.high], [low, high], rtol=1e-4)
  offset, scale = returns.percentile_normalizer_stats(state)
  np.testing.assert_allclose([offset, scale], [low, max(1.0, high - low)], rtol=1e-4)
  # Zero-range returns: scale falls back to the limit, no division by zero.
  flat = returns.percentile_normalizer_init()
  for _ in range(3):
    flat = update(flat, np.full((4, 6), 2.5, np.float32), 0.5)
  offset, scale = returns.percentile_normalizer_stats(flat)
  np.testing.assert_allclose(offset, 2.5 * (1 - 0.5 ** 3), rtol=1e-6)
  assert float(scale) == 1.0


def test_ema_and_slow_target():
  rng = np.random.default_rng(2)
  target = {'w': rng.normal(size=(3, 2)).astype(np.float32), 'b': np.zeros(2, np.float32)}
  online = {'w': rng.normal(size=(3, 2)).astype(np.float32), 'b': np.ones(2, np.float32)}
  out = returns.ema_update(target, online, 0.02)
  np.testing.assert_allclose(out['w'], 0.98 * target['w'] + 0.02 * online['w'], rtol=1e-6)
  update = jax.jit(returns.slow_target_update, static_argnums=(3, 4))
  for step in range(0, 250, 50):
    new = update(target, online, jnp.asarray(step), 1.0, 100)
    expected = online if step % 100 == 0 else target
    np.testing.assert_array_equal(new['w'], expected['w'])
  with pytest.raises(AssertionError, match='online'):
    returns.ema_update(target, {'w': online['w']}, 0.1)

"""common.nn.distributions against NumPy formulas."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn import distributions as dists
from common.nn import math as cmath

RNG = np.random.default_rng(0)


def np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def np_normal_log_prob(x, mean, std):
  return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def test_unimix_and_categorical_log_prob_entropy():
  logits = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32) * 3  # [B, T, S, C]
  probs = np.exp(np_log_softmax(logits.astype(np.float64)))
  mixed = 0.99 * probs + 0.01 / 5
  x = np.eye(5, dtype=np.float32)[RNG.integers(0, 5, (2, 3, 4))]

  @jax.jit
  def run(logits, x):
    dist = dists.OneHotCategorical(logits, unimix=0.01, dims=1)
    return dists.unimix_logits(logits, 0.01), dist.log_prob(x), dist.entropy(), dist.mode()
  unimixed, log_prob, entropy, mode = run(logits, x)
  np.testing.assert_allclose(np.exp(unimixed), mixed, rtol=1e-5)
  ref_lp = np.zeros((2, 3))
  ref_ent = np.zeros((2, 3))
  for b in range(2):
    for t in range(3):
      for s in range(4):
        ref_lp[b, t] += np.log(mixed[b, t, s, x[b, t, s].argmax()])
        ref_ent[b, t] -= (mixed[b, t, s] * np.log(mixed[b, t, s])).sum()
  np.testing.assert_allclose(log_prob, ref_lp, rtol=1e-5)
  np.testing.assert_allclose(entropy, ref_ent, rtol=1e-5)
  np.testing.assert_array_equal(mode, np.eye(5)[mixed.argmax(-1)])
  with pytest.raises(AssertionError, match='x'):
    jax.eval_shape(lambda: dists.OneHotCategorical(logits, dims=1).log_prob(x[..., :4]))
  with pytest.raises(ValueError, match='dims'):
    dists.OneHotCategorical(logits[0, 0, 0], dims=1)


def test_categorical_sample_frequencies_and_straight_through():
  logits = np.log(np.array([0.2, 0.5, 0.3], np.float32))
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  samples = np.asarray(jax.jit(jax.vmap(lambda k: dists.OneHotCategorical(logits).sample(k)))(keys))
  assert set(np.unique(samples)) <= {0.0, 1.0} and (samples.sum(-1) == 1).all()
  np.testing.assert_allclose(samples.mean(0), [0.2, 0.5, 0.3], atol=0.03)
  # d sample / d logits == d probs / d logits, i.e. the identity on probs.
  logits2 = RNG.normal(size=(4,)).astype(np.float32)
  jac = jax.jit(jax.jacobian(lambda l: dists.OneHotCategorical(l).sample(jax.random.PRNGKey(1))))(logits2)
  p = np.exp(np_log_softmax(logits2.astype(np.float64)))
  np.testing.assert_allclose(jac, np.diag(p) - np.outer(p, p), atol=1e-6)


def test_normal_and_bounded_normal():
  mean = RNG.normal(size=(3, 4)).astype(np.float32)
  std = RNG.uniform(0.2, 2.0, (3, 4)).astype(np.float32)
  x = RNG.normal(size=(3, 4)).astype(np.float32)
  raw = np.array([[-100.0, 0.0, 100.0]], np.float32)
  raw_mean = np.array([[-50.0, 0.3, 50.0]], np.float32)

  @jax.jit
  def run(mean, std, x, raw_mean, raw):
    dist = dists.Normal(mean, std, dims=1)
    grad = jax.grad(lambda m: dists.Normal(m, std, 1).sample(jax.random.PRNGKey(0)).sum())(mean)
    bounded = dists.bounded_normal(raw_mean, raw, 0.1, 1.0)
    return (dist.log_prob(x), dist.entropy(), dist.mode(), grad, bounded.std, bounded.mean,
            bounded.log_prob(jnp.zeros((1, 3))))
  log_prob, entropy, mode, grad, b_std, b_mean, b_log_prob = run(mean, std, x, raw_mean, raw)
  np.testing.assert_allclose(log_prob, np_normal_log_prob(x, mean, std).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(entropy, (0.5 * np.log(2 * np.pi * np.e * std ** 2)).sum(-1), rtol=1e-5)
  np.testing.assert_array_equal(mode, mean)
  np.testing.assert_allclose(grad, np.ones_like(mean))  # reparameterised
  with pytest.raises(AssertionError, match='x'):
    jax.eval_shape(lambda: dists.Normal(mean, std, 1).log_prob(x[:, :2]))
  ref_std = 0.9 / (1 + np.exp(-(raw.astype(np.float64) + 2))) + 0.1
  np.testing.assert_allclose(b_std, ref_std, rtol=1e-6)
  np.testing.assert_allclose(b_mean, np.tanh(raw_mean.astype(np.float64)), rtol=1e-6)
  assert b_log_prob.shape == (1,)


def test_tanh_normal():
  mean = RNG.normal(size=(2, 3)).astype(np.float32)
  std = RNG.uniform(0.3, 1.5, (2, 3)).astype(np.float32)
  x = RNG.uniform(-0.99, 0.99, (2, 3)).astype(np.float32)

  @jax.jit
  def run(mean, std, x):
    dist = dists.TanhNormal(mean, std)
    one = dists.TanhNormal(jnp.array([0.4]), jnp.array([0.8]))
    return (dist.log_prob(x), dist.mode(), dist.log_prob(jnp.ones((2, 3))), dist.sample(jax.random.PRNGKey(0)),
            one.entropy_estimate(jax.random.PRNGKey(2), samples=4000), one.entropy())
  log_prob, mode, log_prob_edge, sample, est, base_entropy = run(mean, std, x)
  u = np.arctanh(x.astype(np.float64))
  ref = (np_normal_log_prob(u, mean, std) - np.log(1 - x.astype(np.float64) ** 2)).sum(-1)
  np.testing.assert_allclose(log_prob, ref, rtol=1e-4)
  np.testing.assert_allclose(mode, np.tanh(mean), rtol=1e-6)
  assert np.isfinite(log_prob_edge).all()
  assert sample.shape == (2, 3) and (np.abs(sample) < 1).all()
  # Sample-based entropy vs numerical integration of -p log p over a 1-D grid.
  grid = np.linspace(-1 + 1e-6, 1 - 1e-6, 200001)
  dens = np.exp(np_normal_log_prob(np.arctanh(grid), 0.4, 0.8)) / (1 - grid ** 2)
  ref_ent = -np.trapezoid(dens * np.log(np.maximum(dens, 1e-300)), grid)
  np.testing.assert_allclose(est, ref_ent, atol=0.05)
  np.testing.assert_allclose(base_entropy, 0.5 * np.log(2 * np.pi * np.e * 0.64), rtol=1e-6)
  assert float(base_entropy[()]) >= ref_ent  # base entropy is an upper bound


def np_trunc_normal_density(grid, loc, scale, low=-1.0, high=1.0):
  """Density of N(loc, scale^2) truncated to [low, high] on a grid, by a loop over points."""
  cdf = lambda t: 0.5 * (1 + math.erf((t - loc) / (scale * math.sqrt(2))))
  mass = cdf(high) - cdf(low)
  out = np.zeros(len(grid))
  for i, t in enumerate(grid):
    if low <= t <= high:
      out[i] = math.exp(-0.5 * ((t - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi) * mass)
  return out


def test_trunc_normal():
  loc = np.array([[-0.9, 0.0, 0.7], [1.0, -1.0, 0.3]], np.float32)
  scale = np.array([[0.1, 0.5, 2.1], [0.1, 0.3, 1.0]], np.float32)
  x = np.array([[-0.95, 0.2, -0.99], [0.999, -0.5, 1.0]], np.float32)

  @jax.jit
  def run(loc, scale, x):
    dist = dists.TruncNormal(loc, scale)
    return dist.log_prob(x), dist.entropy(), dist.mode(), dist.sample(jax.random.PRNGKey(0))
  log_prob, entropy, mode, sample = run(loc, scale, x)
  ref_log_prob = np.zeros(2)
  ref_entropy = np.zeros(2)
  grid = np.linspace(-1, 1, 40001)
  for i in range(2):
    for j in range(3):
      dens = np_trunc_normal_density([float(x[i, j])], float(loc[i, j]), float(scale[i, j]))
      ref_log_prob[i] += np.log(dens[0])
      dens = np_trunc_normal_density(grid, float(loc[i, j]), float(scale[i, j]))
      ref_entropy[i] -= np.trapezoid(dens * np.log(np.maximum(dens, 1e-300)), grid)
  np.testing.assert_allclose(log_prob, ref_log_prob, rtol=1e-4)
  np.testing.assert_allclose(entropy, ref_entropy, rtol=1e-3)
  np.testing.assert_array_equal(mode, loc)
  assert (np.abs(sample) <= 1 - 1e-6).all()
  outside = jax.jit(lambda: dists.TruncNormal(jnp.zeros(1), jnp.ones(1)).log_prob(jnp.full((1,), 1.5)))()
  assert outside[()] == -np.inf
  with pytest.raises(ValueError, match='low < high'):
    dists.TruncNormal(jnp.zeros(1), jnp.ones(1), low=1.0, high=-1.0)


@pytest.mark.parametrize('loc, scale', [(0.3, 0.6), (-0.8, 0.2), (0.0, 2.0)])
def test_trunc_normal_samples_and_gradients(loc, scale):
  """Moments of the draws and their pathwise gradients d E[x] / d(loc, scale) against numerical
  integration of the density (the gradients by central differences of the integrated mean)."""
  n = 200_000

  @jax.jit
  def draws(loc, scale):
    def total(params):
      dist = dists.TruncNormal(jnp.full((n, 1), params[0]), jnp.full((n, 1), params[1]), clip=0.0)
      x = dist.sample(jax.random.PRNGKey(3))
      return x.sum(), x
    (_, x), grad = jax.value_and_grad(total, has_aux=True)(jnp.array([loc, scale]))
    return x, grad / n
  x, grad = draws(loc, scale)
  grid = np.linspace(-1, 1, 20001)
  mean = lambda m, s: np.trapezoid(grid * np_trunc_normal_density(grid, m, s), grid)
  ref_mean = mean(loc, scale)
  ref_var = np.trapezoid((grid - ref_mean) ** 2 * np_trunc_normal_density(grid, loc, scale), grid)
  eps = 1e-4
  ref_grad = [(mean(loc + eps, scale) - mean(loc - eps, scale)) / (2 * eps),
              (mean(loc, scale + eps) - mean(loc, scale - eps)) / (2 * eps)]
  np.testing.assert_allclose(x.mean(), ref_mean, atol=4 * np.sqrt(ref_var / n))
  np.testing.assert_allclose(x.var(), ref_var, rtol=0.02)
  np.testing.assert_allclose(grad, ref_grad, atol=0.01)


def test_trunc_normal_gradient_finite_at_the_bounds():
  """loc = +/-1 (a saturated tanh) with a small scale puts the far bound 20 scales away:
  the inverse CDF's derivative is infinite there, the implicit gradients are not."""
  def loss(loc, scale):
    return dists.TruncNormal(loc, scale).sample(jax.random.PRNGKey(0)).sum()
  loc = jnp.array([1.0, -1.0, 1.0, 0.0] * 256)
  scale = jnp.array([0.1, 0.1, 2.1, 0.1] * 256)
  grads = jax.jit(jax.grad(loss, (0, 1)))(loc, scale)
  assert all(np.isfinite(g).all() for g in grads)


def test_bernoulli_mse_symlog_mse():
  logits = RNG.normal(size=(3, 2)).astype(np.float32) * 3
  x = RNG.integers(0, 2, (3, 2)).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  mean = RNG.normal(size=(2, 3, 4)).astype(np.float32)
  target = (RNG.normal(size=(2, 3, 4)) * 100).astype(np.float32)

  @jax.jit
  def run(logits, x, mean, target):
    dist = dists.Bernoulli(logits, dims=1)
    return (dist.log_prob(x), dist.entropy(), dist.mode(), dists.MSE(mean, dims=2).log_prob(target),
            dists.SymlogMSE(mean, dims=1).log_prob(target), dists.SymlogMSE(mean).mode())
  b_log_prob, b_entropy, b_mode, mse, symlog_mse, symlog_mode = run(logits, x, mean, target)
  np.testing.assert_allclose(b_log_prob, (x * np.log(p) + (1 - x) * np.log(1 - p)).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(b_entropy, -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(-1), rtol=1e-5)
  np.testing.assert_array_equal(b_mode, (p > 0.5).astype(np.float32))
  np.testing.assert_allclose(mse, -((mean - target) ** 2).sum((1, 2)), rtol=1e-5)
  ref = -((mean - np.sign(target) * np.log1p(np.abs(target))) ** 2).sum(-1)
  np.testing.assert_allclose(symlog_mse, ref, rtol=1e-5)
  np.testing.assert_allclose(symlog_mode, np.sign(mean) * np.expm1(np.abs(mean)), rtol=1e-5)


def test_twohot_distribution():
  bins = np.asarray(cmath.symexp_bins(255))
  logits = RNG.normal(size=(3, 255)).astype(np.float32)
  x = np.array([2.5, -1e6, 0.0], np.float32)
  logp = np_log_softmax(logits.astype(np.float64))
  ref_lp = []
  for i in range(3):
    k = np.searchsorted(bins, x[i], side='right') - 1
    if bins[k] == x[i]:
      ref_lp.append(logp[i, k])
    else:
      w = (bins[k + 1] - x[i]) / (bins[k + 1] - bins[k])
      ref_lp.append(w * logp[i, k] + (1 - w) * logp[i, k + 1])
  values = np.array([1e6, -1e6, 7.25, 0.0], np.float32)

  @jax.jit
  def run(logits, x, values):
    dist = dists.TwoHot(logits)
    # Round trip: logits that put the two-hot weights of +/-1e6 give it back as the mean.
    logits_rt = jnp.log(jnp.maximum(cmath.twohot(values, dist.bins), 1e-30))
    return dist.log_prob(x), dist.mean(), dists.TwoHot(jnp.zeros(255)).mean(), dists.TwoHot(logits_rt).mean()
  log_prob, mean, uniform_mean, round_trip = run(logits, x, values)
  np.testing.assert_allclose(log_prob, ref_lp, rtol=1e-5)
  np.testing.assert_allclose(mean, (np.exp(logp) * bins.astype(np.float64)).sum(-1), rtol=1e-4, atol=1.0)
  assert float(uniform_mean) == 0.0  # exactly, despite bins of +/-5e8
  np.testing.assert_allclose(round_trip, values, rtol=1e-5, atol=1e-6)
  # A zero-initialised head's uniform logits over a batch, inside a fused program (the V3
  # critic at its first update): XLA re-associated a pairwise sum here to 0.0159.
  head = jax.jit(lambda w: dists.TwoHot(jnp.ones((2, 8, 32)) @ w).mean())
  np.testing.assert_array_equal(head(jnp.zeros((32, 255))), np.zeros((2, 8)))
  with pytest.raises(AssertionError, match='x'):
    jax.eval_shape(lambda: dists.TwoHot(logits).log_prob(np.zeros((3, 1), np.float32)))
  with pytest.raises(AssertionError, match='bins'):
    jax.eval_shape(lambda: dists.TwoHot(logits, bins[:10]))


def test_tanh_normal_sample_mode_is_the_most_likely_of_100_samples():
  """DreamerV1's reference mode (tools.py SampleDist.mode): draw 100 samples and return the one
  of highest density; checked against the density of the same samples computed in NumPy."""
  mean = np.array([[0.3, -1.2], [2.0, 0.1]], np.float32)
  std = np.array([[0.5, 0.9], [1.4, 0.2]], np.float32)
  dist = dists.TanhNormal(jnp.asarray(mean), jnp.asarray(std))
  key = jax.random.PRNGKey(7)
  mode = np.asarray(dist.sample_mode(key))
  samples = np.asarray(dist.sample_and_log_prob(key, 100)[0], np.float64)   # the same draws
  assert mode.shape == (2, 2)
  for n in range(2):
    u = np.arctanh(np.clip(samples[:, n], -1 + 1e-6, 1 - 1e-6))
    density = (np_normal_log_prob(u, mean[n], std[n]) - np.log(1 - np.tanh(u) ** 2)).sum(-1)
    np.testing.assert_allclose(mode[n], samples[np.argmax(density), n], rtol=1e-6)

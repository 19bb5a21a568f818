"""Shortcut forcing (dreamer4/shortcut.py) against NumPy-loop references of Eq. 4 and Eq. 6-8."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer4 import shortcut

C = 4                                   # latent channels of the toy model
K_MAX = 8
D_MIN = 1.0 / K_MAX


def _matrix(seed=0):
  return np.random.default_rng(seed).normal(size=(C, C)) / np.sqrt(C)


def _f_numpy(w, z, tau, d):
  """The toy x-prediction f(z, tau, d) = tanh(W z) (1 + tau) + d for one frame (scalars tau, d)."""
  return np.tanh(z @ w.T) * (1 + tau) + d


def _f_jax(w):
  """The same toy model for the code under test: tau, d [B, T] broadcast over z [B, T, S, C]."""
  def predict(z, tau, d):
    tau = jnp.reshape(tau, tau.shape + (1,) * (z.ndim - tau.ndim))
    d = jnp.reshape(d, d.shape + (1,) * (z.ndim - d.ndim))
    return jnp.tanh(z @ w.T) * (1 + tau) + d
  return predict


def _batch(seed=1):
  """z_tau [2, 3, 2, C], clean x1, and per-frame (tau, d) mixing d = d_min with larger steps."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(2, 3, 2, C))
  clean = rng.normal(size=(2, 3, 2, C))
  d = np.array([[D_MIN, 1 / 2, 1 / 4], [1.0, D_MIN, 1 / 2]])
  tau = np.array([[3 / 8, 1 / 2, 3 / 4], [0.0, 7 / 8, 0.0]])   # each on its d's grid
  return z, clean, tau, d


def _reference_target(w, z, tau, d):
  """The bootstrap velocity target (b1 + b2) / 2 of one frame (NumPy, float64)."""
  b1 = (_f_numpy(w, z, tau, d / 2) - z) / (1 - tau)
  z_mid = z + b1 * d / 2
  b2 = (_f_numpy(w, z_mid, tau + d / 2, d / 2) - z_mid) / (1 - (tau + d / 2))
  return (b1 + b2) / 2


def _reference_frame(w, z, clean, tau, d):
  """Eq. 7 for one frame (NumPy, float64): the flow term at d_min, else the bootstrap term."""
  if d == D_MIN:
    return np.mean((_f_numpy(w, z, tau, d) - clean) ** 2)
  velocity = (_f_numpy(w, z, tau, d) - z) / (1 - tau)
  return (1 - tau) ** 2 * np.mean((velocity - _reference_target(w, z, tau, d)) ** 2)


def test_step_sizes_are_powers_of_two_down_to_one_over_k_max():
  """step_sizes(64) is [1, 1/2, ..., 1/64] and a k_max that is no power of two is refused."""
  np.testing.assert_array_equal(shortcut.step_sizes(64), [1 / 2 ** k for k in range(7)])
  with pytest.raises(ValueError):
    shortcut.step_sizes(48)


def test_sample_levels_are_uniform_over_steps_and_on_each_steps_grid():
  """d is uniform over the step sizes; tau is on d's grid {0, d, ..., 1 - d}, uniform there."""
  n, k_max = 20000, 64
  tau, d = shortcut.sample_levels(jax.random.PRNGKey(0), (n,), k_max)
  tau, d = np.asarray(tau, np.float64), np.asarray(d, np.float64)
  assert tau.shape == d.shape == (n,)
  sizes = [1 / 2 ** k for k in range(7)]
  assert np.all(np.isin(d, sizes))
  expected = n / len(sizes)
  sigma = np.sqrt(n * (1 / 7) * (6 / 7))
  for size in sizes:                               # ~2857 each, binomial sd ~50
    assert abs(np.sum(d == size) - expected) < 5 * sigma, size
  steps = tau / d
  np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
  assert np.all(tau >= 0) and np.all(tau < 1) and np.all(tau <= 1 - d + 1e-6)
  quarter = tau[d == 1 / 4]
  counts = np.array([np.sum(np.isclose(quarter, v)) for v in (0, 1 / 4, 1 / 2, 3 / 4)])
  assert counts.sum() == quarter.size
  sigma = np.sqrt(quarter.size * 0.25 * 0.75)
  assert np.all(np.abs(counts - quarter.size / 4) < 5 * sigma), counts
  assert np.all(tau[d == 1] == 0)


def test_noised_and_weight_match_the_formulas():
  """noised = (1 - tau) x0 + tau x1 per frame; weight = 0.9 tau + 0.1."""
  rng = np.random.default_rng(0)
  clean, noise = rng.normal(size=(2, 3, 2, C)), rng.normal(size=(2, 3, 2, C))
  tau = rng.uniform(size=(2, 3))
  got = np.asarray(shortcut.noised(jnp.asarray(clean), jnp.asarray(noise), jnp.asarray(tau)))
  want = np.zeros_like(clean)
  for b in range(2):
    for t in range(3):
      want[b, t] = (1 - tau[b, t]) * noise[b, t] + tau[b, t] * clean[b, t]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(shortcut.weight(jnp.asarray(tau))), 0.9 * tau + 0.1,
                             rtol=1e-6)


def test_shortcut_loss_matches_a_per_frame_loop_of_eq7():
  """shortcut_targets + shortcut_loss give Eq. 7's flow or bootstrap term per frame and w(tau),
  the same with and without jit."""
  w = _matrix()
  z, clean, tau, d = _batch()
  predict = _f_jax(jnp.asarray(w, jnp.float32))

  def per_frame_loss(z, clean, tau, d):
    target = shortcut.shortcut_targets(predict, z, tau, d, D_MIN)
    return shortcut.shortcut_loss(predict(z, tau, d), clean, z, tau, d, target, D_MIN)

  args = [jnp.asarray(x, jnp.float32) for x in (z, clean, tau, d)]
  want = np.array([[_reference_frame(w, z[b, t], clean[b, t], tau[b, t], d[b, t])
                    for t in range(3)] for b in range(2)])
  for fn in (per_frame_loss, jax.jit(per_frame_loss)):
    per_frame, weight = fn(*args)
    assert per_frame.shape == weight.shape == (2, 3)
    np.testing.assert_allclose(np.asarray(per_frame), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(weight), 0.9 * tau + 0.1, rtol=1e-6)


def _analytic_grad(w, z, clean, tau, d, target):
  """d/dW of mean_frames(w(tau) L_frame) with the bootstrap target held constant (NumPy)."""
  b_, t_ = tau.shape
  n = z[0, 0].size
  grad = np.zeros_like(w)
  for b in range(b_):
    for t in range(t_):
      pre = z[b, t] @ w.T
      pred = np.tanh(pre) * (1 + tau[b, t]) + d[b, t]
      scale = (0.9 * tau[b, t] + 0.1) / (b_ * t_)
      if d[b, t] == D_MIN:
        g = scale * 2 * (pred - clean[b, t]) / n
      else:
        v = (pred - z[b, t]) / (1 - tau[b, t])
        g = scale * 2 * (1 - tau[b, t]) * (v - target[b, t]) / n
      g_pre = g * (1 + tau[b, t]) * (1 - np.tanh(pre) ** 2)      # [S, C]
      grad += g_pre.T @ z[b, t]
  return grad


def test_bootstrap_target_is_stop_gradient():
  """The gradient of the weighted loss wrt the model's weights flows only through f(z, tau, d)."""
  w = _matrix()
  z, clean, tau, d = _batch()
  zj, cleanj, tauj, dj = [jnp.asarray(x, jnp.float32) for x in (z, clean, tau, d)]

  def loss(wj):
    predict = _f_jax(wj)
    target = shortcut.shortcut_targets(predict, zj, tauj, dj, D_MIN)
    per_frame, weight = shortcut.shortcut_loss(predict(zj, tauj, dj), cleanj, zj, tauj, dj,
                                               target, D_MIN)
    return jnp.mean(weight * per_frame)

  wj = jnp.asarray(w, jnp.float32)
  got = np.asarray(jax.grad(loss)(wj))
  target = np.array([[_reference_target(w, z[b, t], tau[b, t], d[b, t]) for t in range(3)]
                     for b in range(2)])
  want = _analytic_grad(w, z, clean, tau, d, target)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)

  def loss_without_stop(wj):       # the same loss with a target that is differentiated
    predict = _f_jax(wj)
    tau_e, half_e = tauj[..., None, None], (dj / 2)[..., None, None]
    b1 = (predict(zj, tauj, dj / 2) - zj) / (1 - tau_e)
    z_mid = zj + b1 * half_e
    b2 = (predict(z_mid, tauj + dj / 2, dj / 2) - z_mid) / (1 - tau_e - half_e)
    per_frame, weight = shortcut.shortcut_loss(predict(zj, tauj, dj), cleanj, zj, tauj, dj,
                                               (b1 + b2) / 2, D_MIN)
    return jnp.mean(weight * per_frame)

  leaky = np.asarray(jax.grad(loss_without_stop)(wj))   # the check above tells the two apart
  assert np.abs(leaky - want).max() > 100 * np.abs(got - want).max() + 1e-4


@pytest.mark.parametrize('steps', [1, 2, 4])
def test_sample_returns_a_constant_prediction(steps):
  """A model that always predicts x1 is integrated to exactly x1 from noise in 1, 2 and 4 steps."""
  rng = np.random.default_rng(steps)
  x1, noise = rng.normal(size=(3, 2, C)), rng.normal(size=(3, 2, C))
  got = shortcut.sample(lambda z, tau, d: jnp.asarray(x1, jnp.float32),
                        jnp.asarray(noise, jnp.float32), steps)
  np.testing.assert_allclose(np.asarray(got), x1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('steps', [1, 2, 4])
def test_sample_matches_an_euler_loop(steps):
  """sample follows z <- z + d (f(z, tau, d) - z) / (1 - tau) with tau = 0, d, ..., 1 - d."""
  w = _matrix()
  noise = np.random.default_rng(3).normal(size=(3, 2, C))
  got = shortcut.sample(lambda z, tau, d: jnp.tanh(z @ jnp.asarray(w, jnp.float32).T) * (1 + tau)
                        + d, jnp.asarray(noise, jnp.float32), steps)
  z, d = noise.copy(), 1.0 / steps
  for i in range(steps):
    tau = i * d
    z = z + d * (_f_numpy(w, z, tau, d) - z) / (1 - tau)
  np.testing.assert_allclose(np.asarray(got), z, rtol=1e-5, atol=1e-5)


def test_teacher_passes_keep_smallest_step_frames_as_the_student_sees_them():
  """Frames at d_min are context in the bootstrap's half-step passes: same z, tau and d (the
  step embedding of d_min / 2 is never trained), while larger steps get d / 2."""
  calls = []

  def predict(z, tau, d):
    calls.append((np.asarray(z), np.asarray(tau), np.asarray(d)))
    return 0.5 * z + tau[..., None]

  z = jnp.asarray(np.random.default_rng(0).normal(size=(1, 3, 2)), jnp.float32)
  tau = jnp.array([[0.25, 0.5, 0.125]])
  d = jnp.array([[0.125, 0.5, 0.125]])
  shortcut.shortcut_targets(predict, z, tau, d, 0.125)
  (z1, tau1, d1), (z2, tau2, d2) = calls
  for frame in (0, 2):   # d == d_min
    np.testing.assert_array_equal(z2[0, frame], np.asarray(z)[0, frame])
    assert tau1[0, frame] == tau2[0, frame] == tau[0, frame] and d1[0, frame] == d2[0, frame] == 0.125
  assert d1[0, 1] == d2[0, 1] == 0.25 and tau2[0, 1] == 0.75
  assert not np.allclose(z2[0, 1], np.asarray(z)[0, 1])

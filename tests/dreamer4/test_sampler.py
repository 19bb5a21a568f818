"""The shortcut sampler on a toy linear system: a small flow model trained with shortcut forcing
(dreamer4/shortcut.py, Eq. 4 and 6-8) generates the right next latent in 1, 2 and 4 steps."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dreamer4 import shortcut

K_MAX = 4
THETA = 0.6
A = 0.9 * np.array([[np.cos(THETA), -np.sin(THETA)], [np.sin(THETA), np.cos(THETA)]])
UNITS, BATCH, STEPS, LR = 64, 256, 600, 3e-3


def _init(key):
  sizes = [2 + 2 + 2, UNITS, UNITS, 2]           # [z_tau, prev, tau, log2(1/d)] -> x1
  params = []
  for key, fan_in, fan_out in zip(jax.random.split(key, 3), sizes[:-1], sizes[1:]):
    params.append((jax.random.normal(key, (fan_in, fan_out)) / np.sqrt(fan_in),
                   jnp.zeros(fan_out)))
  return params


def _predict(params, z, tau, d, prev):
  """x-prediction f(z_tau, tau, d, prev) of the next latent [N, 2]; tau, d [N] or scalars."""
  level = jnp.broadcast_to(jnp.asarray(tau, jnp.float32), z.shape[:-1])
  step = jnp.broadcast_to(-jnp.log2(jnp.asarray(d, jnp.float32)) / 2, z.shape[:-1])
  x = jnp.concatenate([z, prev, level[..., None], step[..., None]], -1)
  for i, (w, b) in enumerate(params):
    x = x @ w + b
    if i < len(params) - 1:
      x = jax.nn.silu(x)
  return x


def _loss(params, key):
  key_prev, key_level, key_noise = jax.random.split(key, 3)
  prev = jax.random.normal(key_prev, (BATCH, 2))
  clean = prev @ jnp.asarray(A, jnp.float32).T
  tau, d = shortcut.sample_levels(key_level, (BATCH,), K_MAX)
  z = shortcut.noised(clean, jax.random.normal(key_noise, clean.shape), tau)
  frozen = jax.lax.stop_gradient(params)
  target = shortcut.shortcut_targets(lambda x, t, s: _predict(frozen, x, t, s, prev),
                                     z, tau, d, 1.0 / K_MAX)
  per_sample, weight = shortcut.shortcut_loss(_predict(params, z, tau, d, prev), clean, z, tau,
                                              d, target, 1.0 / K_MAX)
  return jnp.mean(weight * per_sample)


@pytest.fixture(scope='module')
def trained():
  """(untrained params, trained params) after STEPS Adam steps of shortcut forcing."""
  initial = _init(jax.random.PRNGKey(0))
  optimizer = optax.adam(LR)

  def step(carry, key):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(_loss)(params, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  train = jax.jit(lambda p, keys: jax.lax.scan(step, (p, optimizer.init(p)), keys))
  (params, _), curve = train(initial, jax.random.split(jax.random.PRNGKey(1), STEPS))
  curve = np.asarray(curve)
  assert np.all(np.isfinite(curve)) and curve[-50:].mean() < 0.1 * curve[:10].mean()
  return initial, params


def _errors(params, steps):
  """Mean |generated - A prev| over 1000 held-out (prev, noise) pairs, sampling with `steps`."""
  rng = np.random.default_rng(steps)
  prev = jnp.asarray(rng.normal(size=(1000, 2)), jnp.float32)
  noise = jnp.asarray(rng.normal(size=(1000, 2)), jnp.float32)
  generated = shortcut.sample(lambda z, tau, d: _predict(params, z, tau, d, prev), noise, steps)
  want = np.asarray(prev, np.float64) @ A.T
  return np.abs(np.asarray(generated) - want).mean(), np.abs(want).mean()


@pytest.mark.parametrize('steps', [1, 2, 4])
def test_shortcut_model_generates_the_next_latent(trained, steps):
  """With 1, 2 and 4 steps from noise, the trained model's sample is close to A prev."""
  initial, params = trained
  error, zero_error = _errors(params, steps)
  untrained_error, _ = _errors(initial, steps)
  # Predicting 0 errs by E|A prev| ~ 0.72 and the untrained net by ~0.7; the trained net by
  # 0.005-0.011 (measured with three training seeds, every step count), so 0.05 leaves 4x
  # headroom and is still 14x below both baselines.
  assert error < 0.05, (steps, error)
  assert error < 0.1 * min(zero_error, untrained_error), (error, zero_error, untrained_error)

"""Tests for common/nn/optim.py against NumPy references of the update rules."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.nn import optim


def _tree(seed):
  rng = np.random.default_rng(seed)
  return {'kernel': rng.normal(size=(4, 3)).astype(np.float32),
          'bias': np.zeros(3, np.float32),   # zero norm: AGC uses the floor pmin
          'scale': (0.01 * rng.normal(size=(5,))).astype(np.float32)}


def _grads(seed, params):
  rng = np.random.default_rng(seed)
  return {k: (rng.normal(size=v.shape) * rng.choice([0.001, 1.0, 100.0])).astype(np.float32)
          for k, v in params.items()}


def _np_agc(grads, params, clip, pmin):
  out = {}
  for k in grads:
    g, p = grads[k].astype(np.float64), params[k].astype(np.float64)
    upper = clip * max(pmin, np.sqrt((p ** 2).sum()))
    out[k] = g / max(1.0, np.sqrt((g ** 2).sum()) / upper)
  return out


def test_agc_matches_numpy():
  params = _tree(0)
  agc = optim.clip_by_agc(0.3, 1e-3)
  for seed in range(4):
    grads = _grads(seed + 10, params)
    got, _ = agc.update(grads, agc.init(params), params)
    want = _np_agc(grads, params, 0.3, 1e-3)
    for k in grads:
      np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-9)
  with pytest.raises(ValueError, match='params'):
    agc.update(grads, agc.init(params))


def test_dreamerv3_chain_matches_numpy():
  config = optim.OptimConfig(kind='dreamerv3', lr=1e-2, warmup=3)
  opt = optim.make_optimizer(config)
  params = _tree(1)
  state = opt.init(params)
  update = jax.jit(opt.update)
  ref = {k: v.astype(np.float64) for k, v in params.items()}
  nu = {k: np.zeros_like(v) for k, v in ref.items()}
  mu = {k: np.zeros_like(v) for k, v in ref.items()}
  for step in range(6):
    grads = _grads(step, params)
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    clipped = _np_agc(grads, ref, 0.3, 1e-3)
    lr = 1e-2 * min(1.0, step / 3)   # the first update has lr 0
    for k in ref:
      nu[k] = 0.999 * nu[k] + 0.001 * clipped[k] ** 2
      scaled = clipped[k] / (np.sqrt(nu[k] / (1 - 0.999 ** (step + 1))) + 1e-20)
      mu[k] = 0.9 * mu[k] + 0.1 * scaled
      ref[k] = ref[k] - lr * mu[k] / (1 - 0.9 ** (step + 1))
    for k in ref:
      np.testing.assert_allclose(params[k], ref[k], rtol=1e-4, atol=1e-6)
  assert np.abs(params['kernel'] - _tree(1)['kernel']).max() > 1e-3


def test_adam_clip_weight_decay_matches_numpy():
  """Adam with clipping; weight decay as the DreamerV2 reference: w <- (1 - wd) w - lr adam(g)."""
  config = optim.OptimConfig(kind='adam', lr=1e-3, eps=1e-5, clip=1.0, warmup=0,
                             weight_decay=1e-2)
  opt = optim.make_optimizer(config)
  params = _tree(2)
  state = opt.init(params)
  ref = {k: v.astype(np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in ref.items()}
  v = {k: np.zeros_like(x) for k, x in ref.items()}
  for step in range(5):
    grads = _grads(step + 20, params)
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    factor = min(1.0, 1.0 / norm)
    for k in ref:
      g = grads[k] * factor
      m[k] = 0.9 * m[k] + 0.1 * g
      v[k] = 0.999 * v[k] + 0.001 * g ** 2
      step_k = (m[k] / (1 - 0.9 ** (step + 1))) / (np.sqrt(v[k] / (1 - 0.999 ** (step + 1))) + 1e-5)
      ref[k] = (1 - 1e-2) * ref[k] - 1e-3 * step_k
    for k in ref:
      np.testing.assert_allclose(params[k], ref[k], rtol=1e-4, atol=1e-6)


def test_v2_weight_decay_scales_every_parameter_on_zero_gradients():
  """DreamerV2's optimizer: a step on zero gradients multiplies every parameter (kernels,
  biases, norm scales) by 1 - 1e-6, whatever the learning rate."""
  for lr in (1e-4, 2e-4):
    opt = optim.make_optimizer(optim.OptimConfig(kind='adam', lr=lr, eps=1e-5, clip=100.0,
                                                 warmup=0, weight_decay=1e-6))
    params = jax.tree.map(jnp.asarray, _tree(3))
    updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    for k, value in optax.apply_updates(params, updates).items():
      np.testing.assert_allclose(np.asarray(value, np.float64),
                                 np.asarray(params[k], np.float64) * (1 - 1e-6), rtol=2e-7)


def test_bad_config_errors():
  with pytest.raises(ValueError, match='kind'):
    optim.OptimConfig(kind='sgd')
  with pytest.raises(ValueError, match='beta2'):
    optim.OptimConfig(beta2=1.0)
  with pytest.raises(TypeError, match='config'):
    optim.make_optimizer({'kind': 'adam'})

"""common.nn.kl against NumPy formulas and analytic gradients."""
import jax
import numpy as np
import pytest

from common.nn import kl as klmod

RNG = np.random.default_rng(0)


def np_gauss_kl(m1, s1, m2, s2):
  """Per-dim KL(N1 || N2) and its analytic derivatives w.r.t. (m1, s1, m2, s2)."""
  kl = np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
  grads = ((m1 - m2) / s2 ** 2, -1 / s1 + s1 / s2 ** 2, -(m1 - m2) / s2 ** 2,
           1 / s2 - (s1 ** 2 + (m1 - m2) ** 2) / s2 ** 3)
  return kl, grads


def gauss_stats(shape, spread=1.0):
  return {'mean': (RNG.normal(size=shape) * spread).astype(np.float32),
          'std': RNG.uniform(0.5, 1.5, shape).astype(np.float32)}


def test_latent_kl_and_entropy_match_loops():
  post, prior = gauss_stats((2, 3, 4)), gauss_stats((2, 3, 4))
  np_kl, _ = np_gauss_kl(*(np.float64(a) for a in (post['mean'], post['std'], prior['mean'], prior['std'])))
  post_c = {'logits': RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)}
  prior_c = {'logits': RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)}
  out = jax.jit(lambda a, b, c, d: (klmod.latent_kl(a, b), klmod.latent_kl(c, d), klmod.latent_kl(c, d, 0.01),
                                    klmod.latent_entropy(c), klmod.latent_entropy(a)))(post, prior, post_c, prior_c)
  np.testing.assert_allclose(out[0], np_kl.sum(-1), rtol=1e-5)
  for unimix, result in ((0.0, out[1]), (0.01, out[2])):
    ref = np.zeros((2, 3))
    ent = np.zeros((2, 3))
    for idx in np.ndindex(2, 3, 4):
      p = np.exp(post_c['logits'][idx].astype(np.float64)); p = (1 - unimix) * p / p.sum() + unimix / 5
      q = np.exp(prior_c['logits'][idx].astype(np.float64)); q = (1 - unimix) * q / q.sum() + unimix / 5
      ref[idx[:2]] += (p * np.log(p / q)).sum()
      ent[idx[:2]] -= (p * np.log(p)).sum()
    np.testing.assert_allclose(result, ref, rtol=1e-5, atol=1e-6)
    if unimix == 0.0:
      np.testing.assert_allclose(out[3], ent, rtol=1e-5)
  np.testing.assert_allclose(out[4], (0.5 * np.log(2 * np.pi * np.e * np.float64(post['std']) ** 2)).sum(-1), rtol=1e-5)


def test_plain_free_nats_and_jit_parity():
  post, prior = gauss_stats((4, 3, 2), 2.0), gauss_stats((4, 3, 2), 2.0)
  np_kl = np_gauss_kl(*(np.float64(a) for a in (post['mean'], post['std'], prior['mean'], prior['std'])))[0].sum(-1)
  for free_avg, ref in ((True, max(np_kl.mean(), 3.0)), (False, np.maximum(np_kl, 3.0).mean())):
    config = klmod.KLConfig(mode='plain', free=3.0, free_avg=free_avg, scale=2.0)
    loss, metrics = jax.jit(klmod.kl_loss, static_argnums=2)(post, prior, config)
    np.testing.assert_allclose(loss, 2.0 * ref, rtol=1e-5)
    np.testing.assert_allclose(metrics['kl'], np_kl.mean(), rtol=1e-5)
  eager_loss, eager_metrics = klmod.kl_loss(post, prior, config)
  np.testing.assert_allclose(eager_loss, loss, rtol=1e-6)
  assert set(eager_metrics) == {'kl', 'dyn_loss', 'rep_loss', 'prior_entropy', 'post_entropy'}
  # Under the free nats the gradient is zero.
  big_free = klmod.KLConfig(mode='plain', free=1e4)
  grads = jax.jit(jax.grad(lambda a, b: klmod.kl_loss(a, b, big_free)[0], argnums=(0, 1)))(post, prior)
  assert all(np.all(leaf == 0) for leaf in jax.tree_util.tree_leaves(grads))


def test_v2_balancing_gradient_split():
  post, prior = gauss_stats((5, 3)), gauss_stats((5, 3))
  config = klmod.KLConfig(mode='balanced', balance=0.8, free=0.0, free_avg=True)
  grad_post, grad_prior = jax.jit(jax.grad(lambda a, b: klmod.kl_loss(a, b, config)[0], argnums=(0, 1)))(post, prior)
  _, (d_m1, d_s1, d_m2, d_s2) = np_gauss_kl(*(np.float64(a) for a in (post['mean'], post['std'], prior['mean'], prior['std'])))
  n = 5  # loss is the mean over the 5 steps
  np.testing.assert_allclose(grad_post['mean'], 0.2 * d_m1 / n, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grad_post['std'], 0.2 * d_s1 / n, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grad_prior['mean'], 0.8 * d_m2 / n, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grad_prior['std'], 0.8 * d_s2 / n, rtol=1e-4, atol=1e-7)
  # Categorical: d KL(p||q) / d logits_q = q - p, so the prior's share is 0.8 (q - p) / n.
  post_c = {'logits': RNG.normal(size=(5, 2, 3)).astype(np.float32)}
  prior_c = {'logits': RNG.normal(size=(5, 2, 3)).astype(np.float32)}
  grad_prior_c = jax.jit(jax.grad(lambda b: klmod.kl_loss(post_c, b, config)[0]))(prior_c)
  p = np.exp(post_c['logits']); p /= p.sum(-1, keepdims=True)
  q = np.exp(prior_c['logits']); q /= q.sum(-1, keepdims=True)
  np.testing.assert_allclose(grad_prior_c['logits'], 0.8 * (q - p) / n, rtol=1e-4, atol=1e-7)


def test_v3_free_bits_per_step():
  # Step 0..2 have KL far below 1 nat, steps 3..5 far above.
  post = gauss_stats((6, 4))
  prior = {'mean': post['mean'] + np.where(np.arange(6)[:, None] < 3, 0.01, 2.0).astype(np.float32),
           'std': post['std'].copy()}
  config = klmod.KLConfig(mode='split', free=1.0, free_avg=False, dyn_scale=1.0, rep_scale=0.1)
  (loss, metrics), (grad_post, grad_prior) = jax.jit(jax.value_and_grad(
      lambda a, b: klmod.kl_loss(a, b, config), argnums=(0, 1), has_aux=True))(post, prior)
  kl, (d_m1, _, d_m2, _) = np_gauss_kl(*(np.float64(a) for a in (post['mean'], post['std'], prior['mean'], prior['std'])))
  per_step = kl.sum(-1)
  assert (per_step[:3] < 1).all() and (per_step[3:] > 1).all()
  clipped = np.maximum(per_step, 1.0).mean()
  np.testing.assert_allclose(loss, 1.1 * clipped, rtol=1e-5)
  np.testing.assert_allclose(metrics['dyn_loss'], clipped, rtol=1e-5)
  np.testing.assert_allclose(metrics['rep_loss'], clipped, rtol=1e-5)
  active = (per_step > 1.0)[:, None]
  np.testing.assert_allclose(grad_prior['mean'], 1.0 * d_m2 * active / 6, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grad_post['mean'], 0.1 * d_m1 * active / 6, rtol=1e-4, atol=1e-7)
  assert np.all(np.asarray(grad_prior['mean'])[:3] == 0)


def test_bad_inputs():
  with pytest.raises(ValueError, match='mode'):
    klmod.KLConfig(mode='v4')
  with pytest.raises(ValueError, match='post_stats'):
    klmod.kl_loss({'loc': np.zeros(3)}, {'mean': np.zeros(3), 'std': np.ones(3)}, klmod.KLConfig())
  with pytest.raises(ValueError, match='same kind'):
    klmod.kl_loss({'logits': np.zeros((2, 3))}, {'mean': np.zeros(3), 'std': np.ones(3)}, klmod.KLConfig())
  with pytest.raises(AssertionError, match='logits'):
    klmod.latent_kl({'logits': np.zeros((2, 3))}, {'logits': np.zeros((2, 4))})

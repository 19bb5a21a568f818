"""The agent objectives and loss normalisation (dreamer4/losses.py, Eq. 9-11) vs NumPy loops."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer4 import losses

ALPHA, BETA = 0.5, 0.3


@pytest.mark.parametrize('offset', [0, 1])
def test_mtp_targets_match_a_loop(offset):
  """Target n of step t is values[t + offset + n], masked past the window, episode or valid."""
  rng = np.random.default_rng(offset)
  values = rng.normal(size=(2, 6)).astype(np.float32)
  episode = np.array([[0, 0, 0, 1, 1, 1], [3, 3, 4, 4, 4, 5]])
  valid = np.array([[1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 0, 1]], bool)
  distances = 2
  targets, mask = losses.mtp_targets(jnp.asarray(values), jnp.asarray(episode), jnp.asarray(valid),
                                     distances, offset)
  targets, mask = np.asarray(targets), np.asarray(mask)
  assert targets.shape == mask.shape == (2, 6, distances + 1)
  want_mask = np.zeros((2, 6, distances + 1), bool)
  for b in range(2):
    for t in range(6):
      for n in range(distances + 1):
        u = t + offset + n
        want_mask[b, t, n] = u < 6 and episode[b, u] == episode[b, t] and valid[b, u]
        if want_mask[b, t, n]:
          assert targets[b, t, n] == values[b, u], (b, t, n)
  np.testing.assert_array_equal(mask, want_mask)
  assert want_mask.any() and not want_mask.all()


def _pmpo_reference(log_prob, advantage, kl, weight):
  """Eq. 11 with weighted sets: (1 - a) / |D-| sum_{D-} logp - a / |D+| sum_{D+} logp
  + b / N sum KL, where |D| and N are sums of weights and an empty set's term is 0."""
  neg_sum = neg_size = pos_sum = pos_size = kl_sum = total = 0.0
  for lp, adv, k, w in zip(log_prob.ravel(), advantage.ravel(), kl.ravel(), weight.ravel()):
    if adv >= 0:
      pos_sum += w * lp
      pos_size += w
    else:
      neg_sum += w * lp
      neg_size += w
    kl_sum += w * k
    total += w
  neg = neg_sum / neg_size if neg_size > 0 else 0.0
  pos = pos_sum / pos_size if pos_size > 0 else 0.0
  return (1 - ALPHA) * neg - ALPHA * pos + BETA * kl_sum / total


def _pmpo_inputs(seed=0, shape=(3, 4)):
  rng = np.random.default_rng(seed)
  log_prob = -rng.uniform(0.1, 3.0, shape)
  advantage = rng.normal(size=shape)
  advantage.flat[0] = 0.0                       # A = 0 belongs to D+
  kl = rng.uniform(0.0, 1.0, shape)
  return log_prob, advantage, kl


def _pmpo(log_prob, advantage, kl, weight=None):
  args = [jnp.asarray(x, jnp.float32) for x in (log_prob, advantage, kl)]
  w = None if weight is None else jnp.asarray(weight, jnp.float32)
  loss, metrics = losses.pmpo_loss(*args, ALPHA, BETA, w)
  return float(loss), metrics


def test_pmpo_matches_eq11_unweighted():
  """pmpo_loss without a weight is Eq. 11 with set sizes |D-|, |D+| and N."""
  log_prob, advantage, kl = _pmpo_inputs()
  loss, metrics = _pmpo(log_prob, advantage, kl)
  want = _pmpo_reference(log_prob, advantage, kl, np.ones_like(log_prob))
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(float(metrics['positive_share']), np.mean(advantage >= 0), rtol=1e-6)


def test_pmpo_matches_eq11_weighted():
  """With a float weight, the sets' sums and sizes are weighted (each set's weight above 1)."""
  log_prob, advantage, kl = _pmpo_inputs(1)
  weight = np.random.default_rng(2).uniform(0.5, 2.0, log_prob.shape)
  assert weight[advantage < 0].sum() > 1 and weight[advantage >= 0].sum() > 1
  loss, _ = _pmpo(log_prob, advantage, kl, weight)
  np.testing.assert_allclose(loss, _pmpo_reference(log_prob, advantage, kl, weight), rtol=1e-5)
  unweighted = _pmpo_reference(log_prob, advantage, kl, np.ones_like(weight))
  assert abs(loss - unweighted) > 1e-3          # the weight matters


def test_pmpo_weighted_set_below_unit_weight():
  """A set whose total weight is below 1 (e.g. D- of states after a likely end) is still
  averaged by its weight: the term is its weighted mean log-prob, not shrunk towards 0."""
  log_prob, advantage, kl = _pmpo_inputs(3)
  advantage = np.abs(advantage)
  advantage[0, 1] = -1.0                        # D- is one state
  weight = np.ones_like(log_prob)
  weight[0, 1] = 0.25                           # ... that counts a quarter
  loss, _ = _pmpo(log_prob, advantage, kl, weight)
  want = _pmpo_reference(log_prob, advantage, kl, weight)
  # The D- term is (1 - alpha) log_prob[0, 1] whatever that state's weight.
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_pmpo_with_all_advantages_positive_has_no_negative_term():
  """An empty D- contributes 0 (not NaN): the loss is -alpha mean(logp) + beta mean(KL)."""
  log_prob, advantage, kl = _pmpo_inputs(4)
  advantage = np.abs(advantage)
  loss, metrics = _pmpo(log_prob, advantage, kl)
  assert np.isfinite(loss)
  np.testing.assert_allclose(loss, -ALPHA * log_prob.mean() + BETA * kl.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['positive_share']), 1.0)
  weight = np.random.default_rng(5).uniform(0.5, 2.0, log_prob.shape)
  loss, _ = _pmpo(log_prob, advantage, kl, weight)
  np.testing.assert_allclose(loss, _pmpo_reference(log_prob, advantage, kl, weight), rtol=1e-5)


def test_pmpo_gradient_ignores_the_advantage():
  """The advantage only picks the set (its sign); no gradient flows into it."""
  log_prob, advantage, kl = [jnp.asarray(x, jnp.float32) for x in _pmpo_inputs(6)]
  grad = jax.grad(lambda a: losses.pmpo_loss(log_prob, a, kl, ALPHA, BETA)[0])(advantage)
  np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_categorical_kl_matches_numpy():
  """categorical_kl(l, l') = sum_a pi(a) (log pi(a) - log pi'(a)) with pi = softmax(l)."""
  rng = np.random.default_rng(0)
  logits, prior = rng.normal(size=(3, 2, 5)), rng.normal(size=(3, 2, 5)) * 2
  got = np.asarray(losses.categorical_kl(jnp.asarray(logits, jnp.float32),
                                         jnp.asarray(prior, jnp.float32)))
  want = np.zeros((3, 2))
  for i in range(3):
    for j in range(2):
      p = np.exp(logits[i, j]) / np.exp(logits[i, j]).sum()
      q = np.exp(prior[i, j]) / np.exp(prior[i, j]).sum()
      want[i, j] = np.sum(p * (np.log(p) - np.log(q)))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  same = losses.categorical_kl(jnp.asarray(logits), jnp.asarray(logits) + 3.0)
  np.testing.assert_allclose(np.asarray(same), 0.0, atol=1e-6)


def test_lambda_targets_match_a_loop():
  """R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = v_H, batch-major [B, H]."""
  rng = np.random.default_rng(0)
  batch, horizon, gamma, lam = 2, 5, 0.997, 0.95
  reward = rng.normal(size=(batch, horizon))
  cont = rng.uniform(size=(batch, horizon))
  cont[0, 2] = 0.0                               # a terminal step cuts the bootstrap
  value = rng.normal(size=(batch, horizon + 1))
  got = np.asarray(losses.lambda_targets(*[jnp.asarray(x, jnp.float32) for x in
                                           (reward, cont, value)], gamma, lam))
  want = np.zeros((batch, horizon))
  for b in range(batch):
    following = value[b, horizon]
    for t in reversed(range(horizon)):
      following = reward[b, t] + gamma * cont[b, t] * (
          (1 - lam) * value[b, t + 1] + lam * following)
      want[b, t] = following
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[0, 2], reward[0, 2], rtol=1e-6)


def test_rms_normalise_divides_by_the_running_rms():
  """First call divides each loss by |loss|; later calls by sqrt of an EMA of squares."""
  decay = 0.9
  state = losses.rms_init(['a', 'b'])
  first = {'a': jnp.float32(2.0), 'b': jnp.float32(0.5)}
  total, state = losses.rms_normalise(state, first, decay)
  np.testing.assert_allclose(float(total), 2.0, rtol=1e-6)
  np.testing.assert_allclose([float(state['a']), float(state['b'])], [4.0, 0.25], rtol=1e-6)
  second = {'a': 3.0, 'b': 0.1}
  total, state = losses.rms_normalise(state, {k: jnp.float32(v) for k, v in second.items()},
                                      decay)
  want_state = {'a': decay * 4.0 + (1 - decay) * 9.0, 'b': decay * 0.25 + (1 - decay) * 0.01}
  want = sum(second[k] / np.sqrt(want_state[k]) for k in second)
  np.testing.assert_allclose(float(total), want, rtol=1e-5)
  np.testing.assert_allclose([float(state['a']), float(state['b'])],
                             [want_state['a'], want_state['b']], rtol=1e-5)

  def normalised(values):
    return losses.rms_normalise(state, {'a': values[0], 'b': values[1]}, decay)[0]

  grad = np.asarray(jax.grad(normalised)(jnp.asarray([3.0, 0.1], jnp.float32)))
  for i, name in enumerate(['a', 'b']):           # d total / d loss_k = 1 / RMS_k only
    new = decay * float(state[name]) + (1 - decay) * second[name] ** 2
    np.testing.assert_allclose(grad[i], 1 / np.sqrt(new), rtol=1e-5)

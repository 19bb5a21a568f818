"""dreamer/explore.py (Plan2Explore) against NumPy loops over members, steps and dimensions."""
import dataclasses

import jax
import numpy as np

from dreamer import configs
from dreamer import explore

CRITIC = dataclasses.replace(configs.CriticConfig(), layers=2, units=32)


def _ensemble(members=4, out=5, inputs=7):
  member = explore.make_member(CRITIC, out, 'float32')
  params = explore.init_ensemble(member, members, jax.random.PRNGKey(0), inputs)
  return member, params


def _member_predictions(member, params, inputs, members):
  return [np.asarray(member.apply({'params': jax.tree.map(lambda x, k=k: x[k], params)},
                                  inputs)) for k in range(members)]


def test_intrinsic_reward_is_the_ensemble_variance():
  """mean over dimensions of the population variance over members, by loops."""
  member, params = _ensemble()
  inputs = np.random.default_rng(0).normal(size=(3, 6, 7)).astype(np.float32)
  got = np.asarray(explore.disagreement(member, params, inputs))
  preds = _member_predictions(member, params, inputs, 4)
  expected = np.zeros((3, 6))
  for b in range(3):
    for t in range(6):
      total = 0.0
      for d in range(5):
        values = [preds[k][b, t, d] for k in range(4)]
        mean = sum(values) / 4
        total += sum((v - mean) ** 2 for v in values) / 4
      expected[b, t] = total / 5
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
  assert expected.min() > 0


def test_ensemble_loss_predicts_offset_steps_ahead_within_episodes():
  """Sum over members of the mean over (b, t) pairs in one episode of
  0.5 ||mu_k(x_t) - y_{t+offset}||^2, by loops; a pair across an episode start is left out."""
  member, params = _ensemble(members=3, out=2, inputs=4)
  rng = np.random.default_rng(1)
  inputs = rng.normal(size=(2, 7, 4)).astype(np.float32)
  targets = rng.normal(size=(2, 7, 2)).astype(np.float32)
  is_first = np.zeros((2, 7), bool)
  is_first[:, 0] = True
  is_first[1, 4] = True
  offset = 2
  got = float(explore.ensemble_loss(member, params, inputs, targets, is_first, offset))
  preds = _member_predictions(member, params, inputs, 3)
  total = 0.0
  for k in range(3):
    losses = []
    for b in range(2):
      for t in range(7 - offset):
        if is_first[b, t + 1:t + offset + 1].any():
          continue
        losses.append(0.5 * np.sum((preds[k][b, t] - targets[b, t + offset]) ** 2))
    total += np.mean(losses)
  assert len(losses) == 10 - 2   # row 1 loses the pairs (2, 4) and (3, 5)
  np.testing.assert_allclose(got, total, rtol=1e-5)

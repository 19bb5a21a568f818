"""Imagination targets as each Dreamer version's reference code indexes them (NumPy loops)."""
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer import actor_critic as ac_lib

N, H, LAM = 3, 6, 0.9


def _trajectory(seed=0):
  rng = np.random.default_rng(seed)
  reward = rng.normal(size=(N, H + 1))
  disc = rng.uniform(0.0, 1.0, (N, H + 1))
  value = rng.normal(size=(N, H + 1))
  return reward, disc, value


def _loop_returns(reward, disc, value, states, own_reward):
  """G over `states`, bootstrapped with value at the last index: the reward and discount of
  the state itself (own_reward, V1/V2) or of the next one (V3)."""
  out = {}
  last = states[-1] + 1
  following = value[last]
  for t in reversed(states):
    if own_reward:
      following = reward[t] + disc[t] * ((1 - LAM) * value[t + 1] + LAM * following)
    else:
      following = reward[t + 1] + disc[t + 1] * ((1 - LAM) * value[t + 1] + LAM * following)
    out[t] = following
  return np.array([out[t] for t in states])


@pytest.mark.parametrize('kind', ['v3', 'v2', 'v1'])
def test_targets_match_the_reference_indexing(kind):
  reward, disc, value = _trajectory()
  gamma = 0.99
  got = ac_lib.imagination_targets(kind, jnp.asarray(reward), jnp.asarray(disc),
                                   jnp.asarray(value), LAM, gamma)
  for n in range(N):
    r, d, v = reward[n], disc[n], value[n]
    if kind == 'v3':    # dreamerv3 agent.py imag_loss: s_0..s_{H-1}, w_t = prod_{j<=t} d_j / gamma
      critic = actor = list(range(H))
      target = _loop_returns(r, d, v, critic, own_reward=False)
      weight = np.array([np.prod(d[:t + 1]) / gamma for t in critic])
      actor_return, baseline, actor_weight = target, v[:H], weight
    elif kind == 'v2':  # dreamerv2 agent.py: critic s_0..s_{H-1}, actor s_0..s_{H-2} on T_{t+1}
      critic, actor = list(range(H)), list(range(H - 1))
      target = _loop_returns(r, d, v, critic, own_reward=True)
      weight = np.array([np.prod(d[:t]) for t in critic])
      actor_return, baseline, actor_weight = target[1:], v[:H - 1], weight[:H - 1]
    else:               # dreamer dreamer.py: s_1..s_{H-1}, d_k = prod_{1<=j<k} d_j
      critic = actor = list(range(1, H))
      target = _loop_returns(r, d, v, critic, own_reward=True)
      weight = np.array([np.prod(d[1:k]) for k in critic])
      actor_return, baseline, actor_weight = target, v[1:H], weight
    assert (got.critic.start, got.critic.stop) == (critic[0], critic[-1] + 1)
    assert (got.actor.start, got.actor.stop) == (actor[0], actor[-1] + 1)
    np.testing.assert_allclose(got.critic_target[n], target, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.critic_weight[n], weight, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.actor_return[n], actor_return, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.baseline[n], baseline, rtol=1e-6)
    np.testing.assert_allclose(got.actor_weight[n], actor_weight, rtol=1e-5, atol=1e-7)

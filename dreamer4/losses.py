"""Dreamer 4's agent objectives (Hafner, Yan and Lillicrap 2025, Sec. 3, Eq. 9-11) and its loss
normalisation. Pure functions; the stages jit them.
"""
import jax
import jax.numpy as jnp

from common.nn import returns
from common.nn.distributions import TwoHot


def rms_init(names) -> dict:
  """The running mean of each loss's square (Sec. 3: every loss is divided by its RMS)."""
  return {name: jnp.zeros((), jnp.float32) for name in names}


def rms_normalise(state: dict, losses: dict, decay: float):
  """(sum_k loss_k / max(RMS_k, 1e-8) with RMS_k stop-gradient, new state).

  RMS_k = sqrt of an EMA of loss_k^2, bias-corrected by starting from the first value.
  """
  new, total = {}, 0.0
  for name, loss in losses.items():
    square = jax.lax.stop_gradient(jnp.square(loss))
    old = state[name]
    new[name] = jnp.where(old == 0, square, decay * old + (1 - decay) * square)
    total = total + loss / jnp.maximum(jnp.sqrt(new[name]), 1e-8)
  return total, new


def mtp_targets(values, episode, valid, distances: int, offset: int):
  """Multi-token prediction targets (Eq. 9): from step t, values[t + offset + n], n = 0..L.

  values, episode, valid: [B, T]. Returns (targets [B, T, L+1], mask [B, T, L+1]); a target is
  masked where it falls past the window, in another episode than t, or is not valid.
  """
  frames = values.shape[1]
  index = jnp.arange(frames)[:, None] + offset + jnp.arange(distances + 1)[None]   # [T, L+1]
  inside = index < frames
  index = jnp.minimum(index, frames - 1)
  targets = values[:, index]
  mask = inside & (episode[:, index] == episode[:, :, None]) & valid[:, index]
  return targets, mask


def masked_mean(x, mask):
  """sum(x * mask) / sum(mask) for boolean or float weights; 0 where the weights sum to 0."""
  mask = mask.astype(x.dtype)
  total = mask.sum()
  return jnp.where(total > 0, (x * mask).sum() / jnp.where(total > 0, total, 1.0), 0.0)


def policy_log_prob(logits, action):
  """log pi(a | h) of a categorical head: logits [..., A], action [...] int."""
  return jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], -1)[..., 0]


def categorical_kl(logits, prior_logits):
  """KL(pi || pi_prior) between categoricals [..., A] -> [...]."""
  logp, logq = jax.nn.log_softmax(logits), jax.nn.log_softmax(prior_logits)
  return (jnp.exp(logp) * (logp - logq)).sum(-1)


def pmpo_loss(log_prob, advantage, kl, alpha: float, beta: float, weight=None):
  """PMPO with a reverse KL to the behaviour-cloning prior (Eq. 11).

    L = (1 - alpha) / |D-| sum_{D-} log pi(a|s) - alpha / |D+| sum_{D+} log pi(a|s)
        + beta / N sum_i KL[pi(.|s_i) || pi_prior(.|s_i)]
  with D+ = {A >= 0}, D- = {A < 0}: only the advantage's sign is used. All args [...];
  `weight` (default 1) says how much each state counts: a set's sizes and sums are weighted.
  Returns (loss, metrics).
  """
  weight = jnp.ones_like(log_prob) if weight is None else weight.astype(log_prob.dtype)
  advantage = jax.lax.stop_gradient(advantage)
  positive = weight * (advantage >= 0)
  negative = weight * (advantage < 0)
  loss = ((1 - alpha) * masked_mean(log_prob, negative) - alpha * masked_mean(log_prob, positive)
          + beta * masked_mean(kl, weight))
  return loss, {'positive_share': positive.sum() / jnp.maximum(weight.sum(), 1e-8),
                'kl_prior': masked_mean(kl, weight)}


def lambda_targets(reward, cont, value, discount: float, lam: float):
  """R^lambda_t = r_t + gamma c_t ((1 - lambda) v_{t+1} + lambda R^lambda_{t+1}) (Eq. 10),
  bootstrapped with v at the last step. Batch-major: reward, cont [B, H], value [B, H+1]."""
  ret = returns.lambda_return(reward.T, value.T, discount * cont.T, lam)
  return ret.T


def twohot_nll(logits, target):
  """-log p(target) of a symexp two-hot head: logits [..., K], target [...]."""
  return -TwoHot(logits).log_prob(target)

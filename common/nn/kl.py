"""KL regulariser between the RSSM posterior and prior, as PlaNet and DreamerV1/V2/V3 use it.

Stats dicts are what the RSSM produces: Gaussian `{'mean': [..., S], 'std': [..., S]}`
or categorical `{'logits': [..., S, C]}`. `kl_loss` covers the three papers:
  'plain'    PlaNet / DreamerV1: max(KL(post || prior), free) (Hafner et al. 2019, Eq. 3-4; 2020, Eq. 10).
  'balanced' DreamerV2 KL balancing (Hafner et al. 2021, Alg. 2):
             balance * KL(sg(post) || prior) + (1 - balance) * KL(post || sg(prior)), free nats on each side.
  'split'    DreamerV3 (Hafner et al. 2023, Eq. 5):
             dyn_scale * max(free, KL(sg(post) || prior)) + rep_scale * max(free, KL(post || sg(prior))).
"""
import dataclasses

import chex
import jax
import jax.numpy as jnp

KL_MODES = ('plain', 'balanced', 'split')


@dataclasses.dataclass(frozen=True)
class KLConfig:
  """Which paper's KL loss. Defaults are DreamerV1/PlaNet's; see `kl_loss`."""
  mode: str = 'plain'      # 'plain' (PlaNet/V1), 'balanced' (V2), 'split' (V3)
  free: float = 3.0        # free nats (V1/PlaNet 3, V2 1 (Atari 0), V3 1 "free bits")
  free_avg: bool = True    # clip the batch-mean KL (V1/V2 reference code) instead of each step's KL (V3, PlaNet)
  balance: float = 0.8     # V2 alpha: the share of the gradient that trains the prior
  dyn_scale: float = 1.0   # V3 weight of the dynamics loss (trains the prior)
  rep_scale: float = 0.1   # V3 weight of the representation loss (trains the posterior)
  scale: float = 1.0       # overall multiplier (V1 1, V2 0.1 on Atari / 1 on DMC, V3 1)
  unimix: float = 0.0      # mix uniform into categorical logits first; only if the RSSM stores raw logits

  def __post_init__(self):
    if self.mode not in KL_MODES:
      raise ValueError(f'KLConfig.mode must be one of {KL_MODES}, got {self.mode!r}.')
    if self.free < 0:
      raise ValueError(f'KLConfig.free must be >= 0, got {self.free}.')
    if not 0.0 <= self.balance <= 1.0:
      raise ValueError(f'KLConfig.balance must be in [0, 1], got {self.balance}.')
    if not 0.0 <= self.unimix <= 1.0:
      raise ValueError(f'KLConfig.unimix must be in [0, 1], got {self.unimix}.')


def _kind(stats, name):
  if not isinstance(stats, dict):
    raise TypeError(f'{name} must be a dict of latent stats, got {type(stats).__name__}.')
  if 'logits' in stats:
    chex.assert_rank(stats['logits'], {2, 3, 4, 5, 6}, custom_message=(
        f"{name}['logits'] must be [..., S, C] (stoch, classes)."))
    return 'categorical'
  if 'mean' in stats and 'std' in stats:
    chex.assert_equal_shape([stats['mean'], stats['std']], custom_message=(
        f"{name}['mean'] and {name}['std'] must share a shape [..., S]."))
    if stats['mean'].ndim < 1:
      raise ValueError(f"{name}['mean'] must be [..., S], got shape {stats['mean'].shape}.")
    return 'gaussian'
  raise ValueError(f"{name} needs 'logits' (categorical) or 'mean' and 'std' (Gaussian); "
                   f'got keys {sorted(stats)}.')


def _log_probs(logits, unimix):
  if unimix:
    probs = (1.0 - unimix) * jax.nn.softmax(logits, -1) + unimix / logits.shape[-1]
    return jnp.log(probs)
  return jax.nn.log_softmax(logits, -1)


def latent_kl(lhs_stats: dict, rhs_stats: dict, unimix: float = 0.0) -> chex.Array:
  """KL(lhs || rhs) summed over the latent dims -> [...].

  Gaussian: sum_S log(s_r / s_l) + (s_l^2 + (m_l - m_r)^2) / (2 s_r^2) - 1/2.
  Categorical: sum_S sum_C p_l (log p_l - log p_r), after optional unimix.
  """
  kind = _kind(lhs_stats, 'lhs_stats')
  if _kind(rhs_stats, 'rhs_stats') != kind:
    raise ValueError('latent_kl: lhs_stats and rhs_stats must be the same kind (both Gaussian or both categorical).')
  if kind == 'gaussian':
    m_l, s_l, m_r, s_r = lhs_stats['mean'], lhs_stats['std'], rhs_stats['mean'], rhs_stats['std']
    chex.assert_equal_shape([m_l, m_r], custom_message="latent_kl: lhs_stats['mean'] and rhs_stats['mean'] differ in shape.")
    kl = jnp.log(s_r / s_l) + (jnp.square(s_l) + jnp.square(m_l - m_r)) / (2 * jnp.square(s_r)) - 0.5
    return kl.sum(-1)
  l_logits, r_logits = lhs_stats['logits'], rhs_stats['logits']
  chex.assert_equal_shape([l_logits, r_logits], custom_message=(
      "latent_kl: lhs_stats['logits'] and rhs_stats['logits'] differ in shape."))
  log_l, log_r = _log_probs(l_logits, unimix), _log_probs(r_logits, unimix)
  return (jnp.exp(log_l) * (log_l - log_r)).sum((-2, -1))


def latent_entropy(stats: dict, unimix: float = 0.0) -> chex.Array:
  """Entropy of a latent distribution summed over latent dims -> [...]."""
  if _kind(stats, 'stats') == 'gaussian':
    return (0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(stats['std'])).sum(-1)
  log_p = _log_probs(stats['logits'], unimix)
  return -(jnp.exp(log_p) * log_p).sum((-2, -1))


def _stop(stats):
  return jax.tree_util.tree_map(jax.lax.stop_gradient, stats)


def _free(kl, free, free_avg):
  """max(mean KL, free) (V1/V2 code) or mean(max(KL, free)) per step (V3)."""
  if free_avg:
    return jnp.maximum(kl.mean(), free)
  return jnp.maximum(kl, free).mean()


def kl_loss(post_stats: dict, prior_stats: dict, config: KLConfig) -> tuple:
  """The world model's KL term for PlaNet, DreamerV1, V2 or V3 (see the module docstring).

  Args:
    post_stats, prior_stats: latent stats with leaves [..., S] (Gaussian) or [..., S, C].
    config: KLConfig.
  Returns:
    (loss [], metrics) with metrics 'kl' (mean unclipped KL(post||prior)), 'dyn_loss'
    (the clipped term that trains the prior), 'rep_loss' (the clipped term that trains
    the posterior), 'prior_entropy', 'post_entropy' (means). In 'plain' mode both
    terms are the same clipped KL and the gradient reaches both sides in full.
  """
  if not isinstance(config, KLConfig):
    raise TypeError(f'kl_loss: config must be a KLConfig, got {type(config).__name__}.')
  kind = _kind(post_stats, 'post_stats')
  if _kind(prior_stats, 'prior_stats') != kind:
    raise ValueError('kl_loss: post_stats and prior_stats must be the same kind (both Gaussian or both categorical).')
  u = config.unimix
  kl = latent_kl(post_stats, prior_stats, u)
  if config.mode == 'plain':
    loss = _free(kl, config.free, config.free_avg)
    dyn_loss = rep_loss = loss
  else:
    dyn = latent_kl(_stop(post_stats), prior_stats, u)   # trains the prior
    rep = latent_kl(post_stats, _stop(prior_stats), u)   # trains the posterior
    dyn_loss = _free(dyn, config.free, config.free_avg)
    rep_loss = _free(rep, config.free, config.free_avg)
    if config.mode == 'balanced':
      loss = config.balance * dyn_loss + (1.0 - config.balance) * rep_loss
    else:
      loss = config.dyn_scale * dyn_loss + config.rep_scale * rep_loss
  loss = config.scale * loss
  metrics = {
      'kl': kl.mean(),
      'dyn_loss': dyn_loss,
      'rep_loss': rep_loss,
      'prior_entropy': latent_entropy(prior_stats, u).mean(),
      'post_entropy': latent_entropy(post_stats, u).mean(),
  }
  return loss, jax.tree_util.tree_map(jax.lax.stop_gradient, metrics)

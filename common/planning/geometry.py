"""Geometry of latent trajectories: curvature, the straightening loss, distance vs time.

Temporal straightening (Wang et al., "Temporal straightening for latent planning"): a
trajectory z_1..z_T is straight where consecutive velocities v_t = z_{t+1} - z_t point the
same way, i.e. where cos(v_t, v_{t+1}) is near 1. Their regulariser, added to a world model's
loss, is the mean of

    1 - cos(z_{t+1} - z_t, z_{t+2} - z_{t+1})

over the posterior latents of replayed sequences. Planning with a Euclidean cost works better
when latent distance grows with the number of steps between states; `distance_step_correlation`
measures that (Pearson correlation of ||z_{t+k} - z_t|| and k).

Replayed windows may cross episode boundaries (`is_first` marks a new episode's first step):
a triple or pair that spans a boundary is left out. All functions are pure JAX on [B, T, D].
"""
import chex
import jax
import jax.numpy as jnp

EPS = 1e-8   # inside the norm's square root: zero velocities give cos 0 and finite gradients


def _unit(x: jax.Array) -> jax.Array:
  return x / jnp.sqrt(jnp.sum(jnp.square(x), -1, keepdims=True) + EPS)


def no_start_within(is_first: jax.Array, start: int, stop: int) -> jax.Array:
  """[B, T - stop] mask: no episode begins at any of the steps t + start .. t + stop."""
  length = is_first.shape[1]
  ok = jnp.ones((is_first.shape[0], length - stop), bool)
  for offset in range(start, stop + 1):
    ok = ok & ~is_first[:, offset:length - stop + offset]
  return ok


def consecutive_cosine(z: jax.Array, is_first=None) -> tuple:
  """cos(z_{t+1} - z_t, z_{t+2} - z_{t+1}) [B, T - 2] and the mask of triples in one episode.

  z: [B, T, D] latents; is_first: optional bool [B, T] (all False when None).
  """
  chex.assert_rank(z, 3)
  z = z.astype(jnp.float32)
  velocity = _unit(z[:, 1:] - z[:, :-1])                       # [B, T-1, D]
  cos = jnp.sum(velocity[:, :-1] * velocity[:, 1:], -1)        # [B, T-2]
  if is_first is None:
    return cos, jnp.ones(cos.shape, bool)
  return cos, no_start_within(jnp.asarray(is_first, bool), 1, 2)


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  mask = mask.astype(jnp.float32)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def straightening_loss(z: jax.Array, is_first=None) -> jax.Array:
  """Wang et al.'s regulariser: mean over in-episode triples of 1 - cos of consecutive
  velocities of z [B, T, D] (0 for a straight line at any speed, 2 for a reversal)."""
  cos, mask = consecutive_cosine(z, is_first)
  return _masked_mean(1.0 - cos, mask)


def distance_step_correlation(z: jax.Array, is_first=None, max_gap: int = 16) -> jax.Array:
  """Pearson correlation between ||z_{t+k} - z_t|| and k over every in-episode pair with
  1 <= k <= max_gap (k < T). NaN when fewer than two gaps have pairs."""
  chex.assert_rank(z, 3)
  z = z.astype(jnp.float32)
  length = z.shape[1]
  first = (jnp.zeros(z.shape[:2], bool) if is_first is None else jnp.asarray(is_first, bool))
  count = sum_k = sum_d = sum_kk = sum_dd = sum_kd = jnp.zeros((), jnp.float32)
  for gap in range(1, min(max_gap, length - 1) + 1):
    distance = jnp.sqrt(jnp.sum(jnp.square(z[:, gap:] - z[:, :-gap]), -1))   # [B, T-gap]
    weight = no_start_within(first, 1, gap).astype(jnp.float32)
    n = weight.sum()
    d = (distance * weight).sum()
    count, sum_k, sum_kk = count + n, sum_k + gap * n, sum_kk + gap * gap * n
    sum_d, sum_dd = sum_d + d, sum_dd + (jnp.square(distance) * weight).sum()
    sum_kd = sum_kd + gap * d
  cov = sum_kd / count - (sum_k / count) * (sum_d / count)
  var_k = sum_kk / count - jnp.square(sum_k / count)
  var_d = sum_dd / count - jnp.square(sum_d / count)
  return cov / jnp.sqrt(var_k * var_d)


def diagnostics(latents: dict, is_first=None, max_gap: int = 16) -> dict:
  """Per named latent [B, T, D]: `geometry/cos_<name>` (mean cosine of consecutive velocities:
  1 is straight) and `geometry/dist_step_corr_<name>`."""
  out = {}
  for name, z in latents.items():
    cos, mask = consecutive_cosine(z, is_first)
    out[f'geometry/cos_{name}'] = _masked_mean(cos, mask)
    out[f'geometry/dist_step_corr_{name}'] = distance_step_correlation(z, is_first, max_gap)
  return out

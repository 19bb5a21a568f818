"""Shortcut forcing (Dreamer 4, Hafner, Yan and Lillicrap 2025, Sec. 3.2): the dynamics objective.

Flow matching between noise x0 ~ N(0, I) and clean latents x1 along z_tau = (1 - tau) x0 +
tau x1 (signal level tau: 0 is noise, 1 is data), with three changes:
  * x-prediction: the model f(z_tau, tau, d) predicts the clean x1, not the velocity;
  * shortcut models (Frans et al. 2024): the step size d is an input, d = 2^-k for
    k in 0..log2(K_max); at the smallest step d_min = 1 / K_max the target is the data,
        L = || f(z_tau, tau, d_min) - x1 ||^2,
    and at a larger step the target is two half steps of the model itself (bootstrap), in
    velocity space, where v(z, tau, d) = (f(z, tau, d) - z) / (1 - tau):
        b1 = v(z_tau, tau, d/2);   z' = z_tau + b1 d/2;   b2 = v(z', tau + d/2, d/2)
        L = (1 - tau)^2 || (f(z_tau, tau, d) - z_tau) / (1 - tau) - stop_gradient(b1 + b2) / 2 ||^2
    (the (1 - tau)^2 factor puts the velocity loss on the scale of an x-space loss);
  * diffusion forcing (Chen et al. 2024): every frame draws its own signal level, so the
    same model denoises the newest frame from partly clean contexts.
Each frame's loss is weighted by w(tau) = 0.9 tau + 0.1 (`weight`), which puts more weight on
the signal levels where there is something to predict.

tau lies on the grid of its step: tau in {0, d, 2d, ..., 1 - d}, so the sampler's steps land
exactly on trained levels. Sampling integrates K = 1 / d steps from noise:
        z <- z + d (f(z, tau, d) - z) / (1 - tau).
"""
import jax
import jax.numpy as jnp
import numpy as np


def step_sizes(k_max: int) -> np.ndarray:
  """The trained step sizes 1, 1/2, ..., 1/k_max (k_max a power of two)."""
  levels = int(np.log2(k_max))
  if 2 ** levels != k_max:
    raise ValueError(f'shortcut: k_max={k_max} must be a power of two.')
  return 2.0 ** -np.arange(levels + 1)


def sample_levels(key, shape, k_max: int):
  """Per-frame step sizes d (uniform over `step_sizes`) and signal levels tau on d's grid.

  Returns (tau, d), float32 arrays of `shape`.
  """
  key_d, key_tau = jax.random.split(key)
  sizes = jnp.asarray(step_sizes(k_max), jnp.float32)
  d = sizes[jax.random.randint(key_d, shape, 0, len(sizes))]
  steps = jnp.round(1.0 / d).astype(jnp.int32)
  tau = jax.random.randint(key_tau, shape, 0, 2 ** 30) % steps * d
  return tau.astype(jnp.float32), d


def noised(clean, noise, tau):
  """z_tau = (1 - tau) x0 + tau x1; tau [...] broadcast over the latent axes of clean."""
  tau = _expand(tau, clean)
  return (1 - tau) * noise + tau * clean


def weight(tau):
  """The loss weight over signal levels, w(tau) = 0.9 tau + 0.1."""
  return 0.9 * tau + 0.1


def _expand(x, like):
  return jnp.reshape(x, x.shape + (1,) * (like.ndim - x.ndim))


def shortcut_targets(predict, z, tau, d, d_min: float):
  """The bootstrap's velocity target sg(b1 + b2) / 2 of every frame (Eq. 7), [...latent].

  predict(z, tau, d) -> x-prediction of every frame (the same model, called twice more). The
  frames above d_min take the two half steps; frames at d_min (whose loss is the flow term)
  stay as the student pass sees them, since they are context for the frames after them.
  """
  smallest = d <= d_min * (1 + 1e-6)
  label = jnp.where(smallest, d, d / 2)
  move = jnp.where(smallest, 0.0, d / 2)
  tau_e, move_e = _expand(tau, z), _expand(move, z)
  b1 = (predict(z, tau, label) - z) / (1 - tau_e)
  z_mid = z + b1 * move_e
  tau_mid = tau + move
  b2 = (predict(z_mid, tau_mid, label) - z_mid) / (1 - _expand(tau_mid, z))
  return jax.lax.stop_gradient((b1 + b2) / 2)


def shortcut_loss(prediction, clean, z, tau, d, velocity_target, d_min: float):
  """Per-frame loss (mean over latent axes), unweighted, and the frames' weights w(tau).

  prediction = f(z, tau, d) [..., *latent]; clean x1; z = z_tau; velocity_target from
  `shortcut_targets` (ignored where d == d_min).
  """
  axes = tuple(range(tau.ndim, clean.ndim))
  flow = jnp.mean(jnp.square(prediction - clean), axes)
  tau_e = _expand(tau, z)
  velocity = (prediction - z) / (1 - tau_e)
  bootstrap = jnp.square(1 - tau) * jnp.mean(jnp.square(velocity - velocity_target), axes)
  smallest = d <= d_min * (1 + 1e-6)
  return jnp.where(smallest, flow, bootstrap), weight(tau)


def sample(predict, noise, steps: int, tau_start=0.0):
  """Integrates `steps` shortcut steps of size 1 / steps from noise to data.

  predict(z, tau, d) -> x-prediction; tau and d are scalars broadcast by the caller.
  Returns the final x-prediction's integration end point z(1).
  """
  d = 1.0 / steps
  z = noise
  for i in range(steps):
    tau = tau_start + i * d
    z = z + d * (predict(z, jnp.float32(tau), jnp.float32(d)) - z) / (1 - tau)
  return z

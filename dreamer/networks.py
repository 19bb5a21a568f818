"""Dreamer's encoder, decoder and prediction heads over the shared `common.nn.nets` blocks.

DreamerV3 (Hafner et al. 2023, App. B): images go through a CNN (kernel 5,
stride 2, channel multipliers [2, 3, 4, 4], RMSNorm, SiLU) and vectors through a
symlog MLP; the two embeddings are concatenated. The decoder mirrors the encoder
from the model state feat = [deter, stoch]: a sigmoid image decoder (MSE on
[0, 1] pixels) and an MLP for vectors (symlog MSE). Heads are MLPs with a scaled
output layer (zero-initialised for the two-hot reward and critic).
"""
from typing import Sequence

import chex
import flax.linen as nn
import jax.numpy as jnp

from common.nn import distributions as dists
from common.nn import math as cmath
from common.nn import nets

# Observation keys that are not model inputs.
NON_INPUT_KEYS = ('reward', 'is_first', 'is_last', 'is_terminal', 'action')


def split_obs_keys(obs_space: dict) -> tuple:
  """(image_keys, vector_keys) of an observation space: rank-3 arrays are images, rank <= 1 vectors.

  Keys starting with 'log_' or 'log/' are env statistics, not inputs (DreamerV3 convention).
  """
  image_keys, vector_keys = [], []
  for key, space in sorted(obs_space.items()):
    if key in NON_INPUT_KEYS or key.startswith(('log_', 'log/')):
      continue
    if len(space.shape) == 3:
      image_keys.append(key)
    elif len(space.shape) <= 1:
      vector_keys.append(key)
    else:
      raise ValueError(f'obs_space[{key!r}]: shape {space.shape} is neither an image [H, W, C] '
                       'nor a vector [D]; flatten it in the env adapter.')
  if not image_keys and not vector_keys:
    raise ValueError(f'obs_space: no image and no vector observation among {sorted(obs_space)}; '
                     'enable env.pixels or env.proprio.')
  return tuple(image_keys), tuple(vector_keys)


class Encoder(nn.Module):
  """obs dict with leaves [..., H, W, C] / [..., D] -> embedding float32 [..., E].

  image_shapes / vector_dims: ((key, shape), ...) and ((key, D, scalar), ...) in a fixed
  order (see `shapes_of`).
  """
  config: object                     # configs.EncoderConfig
  image_shapes: tuple = ()
  vector_dims: tuple = ()
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, obs: dict):
    cfg = self.config
    outputs = []
    if self.image_shapes:
      images = []
      for key, shape in self.image_shapes:
        image = obs[key]
        if image.shape[-3:] != tuple(shape):
          raise ValueError(f'obs[{key!r}]: expected [..., {tuple(shape)}], got {image.shape}.')
        image = image.astype(jnp.float32) / 255.0 if image.dtype == jnp.uint8 else image
        images.append(image)
      image = jnp.concatenate(images, -1)
      outputs.append(nets.ImageEncoder(
          depth=cfg.depth, mults=tuple(cfg.mults), kernel=cfg.kernel, padding=cfg.padding,
          act=cfg.act, norm=cfg.norm, downsample=cfg.downsample, conv_grad=cfg.conv_grad,
          winit=cfg.winit, norm_eps=cfg.norm_eps, dtype=self.dtype, name='cnn')(image))
    if self.vector_dims:
      vectors = []
      for key, dim, scalar in self.vector_dims:
        x = jnp.asarray(obs[key], jnp.float32)
        vectors.append(x[..., None] if scalar else x)
      x = jnp.concatenate(vectors, -1)
      if cfg.symlog_inputs:
        x = cmath.symlog(x)
      outputs.append(nets.MLP(
          layers=cfg.mlp_layers, units=cfg.mlp_units, act=cfg.act, norm=cfg.norm,
          winit=cfg.winit, norm_eps=cfg.norm_eps, dtype=self.dtype, name='mlp')(x))
    return jnp.concatenate(outputs, -1)


class Decoder(nn.Module):
  """feat [..., F] -> {key: mean} with images [..., H, W, C] in [0, 1] and vectors [..., D].

  Image means are sigmoid outputs for 'mse' (V3) and unbounded for 'normal' (V1/V2).
  Vector means are in symlog space for 'symlog_mse'.
  """
  config: object                     # configs.DecoderConfig
  image_shapes: tuple = ()
  vector_dims: tuple = ()
  deter: int = 0                     # feat = [deter (this size), stoch]; for bspace
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, feat):
    cfg = self.config
    outputs = {}
    if self.image_shapes:
      height, width = self.image_shapes[0][1][:2]
      channels = [shape[2] for _, shape in self.image_shapes]
      for key, shape in self.image_shapes:
        if tuple(shape[:2]) != (height, width):
          raise ValueError(f'obs_space[{key!r}]: all images must share a size, got {shape[:2]} '
                           f'and {(height, width)}.')
      image = nets.ImageDecoder(
          shape=(height, width, sum(channels)), depth=cfg.depth, mults=tuple(cfg.mults),
          kernel=cfg.kernel, padding=cfg.padding, act=cfg.act, norm=cfg.norm,
          output='sigmoid' if cfg.image_dist == 'mse' else 'none', outscale=cfg.outscale,
          upsample=cfg.upsample, bspace=cfg.bspace if cfg.padding == 'SAME' else 0,
          deter=self.deter, units=cfg.mlp_units, conv_grad=cfg.conv_grad, winit=cfg.winit,
          norm_eps=cfg.norm_eps, dtype=self.dtype, name='cnn')(feat)
      if cfg.image_dist != 'mse':
        image = image + 0.5   # the 'none' output lives in the x - 0.5 space
      start = 0
      for (key, _), num in zip(self.image_shapes, channels):
        outputs[key] = image[..., start:start + num]
        start += num
    if self.vector_dims:
      total = sum(dim for _, dim, _ in self.vector_dims)
      x = nets.MLP(layers=cfg.mlp_layers, units=cfg.mlp_units, act=cfg.act, norm=cfg.norm,
                   out=total, outscale=cfg.outscale, winit=cfg.winit, norm_eps=cfg.norm_eps,
                   dtype=self.dtype, name='mlp')(feat)
      start = 0
      for key, dim, scalar in self.vector_dims:
        outputs[key] = x[..., start] if scalar else x[..., start:start + dim]
        start += dim
    return outputs


class Head(nn.Module):
  """MLP head: feat [..., F] -> float32 [..., out_dim] (output layer scaled by `outscale`)."""
  out_dim: int
  layers: int = 1
  units: int = 1024
  act: str = 'silu'
  norm: str = 'rms'
  outscale: float = 1.0
  winit: str = 'trunc_normal'
  norm_eps: float = 1e-4
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, feat):
    return nets.MLP(layers=self.layers, units=self.units, act=self.act, norm=self.norm,
                    out=self.out_dim, outscale=self.outscale, winit=self.winit,
                    norm_eps=self.norm_eps, dtype=self.dtype, name='mlp')(feat)


def make_head(config, dtype='float32') -> Head:
  """A Head for a HeadConfig/CriticConfig (two-hot heads output `bins` logits)."""
  return Head(out_dim=head_out_dim(config), layers=config.layers, units=config.units,
              act=config.act, norm=config.norm, outscale=config.outscale, winit=config.winit,
              norm_eps=config.norm_eps, dtype=dtype)


HEAD_DISTS = ('symexp_twohot', 'mse', 'normal', 'binary')


def head_out_dim(config) -> int:
  if config.dist not in HEAD_DISTS:
    raise ValueError(f'head dist: unknown {config.dist!r}; use one of {HEAD_DISTS}.')
  return config.bins if config.dist == 'symexp_twohot' else 1


def head_dist(config, out: chex.Array):
  """The output distribution of a scalar head from its raw output [..., out_dim]."""
  if config.dist == 'symexp_twohot':
    return dists.TwoHot(out)   # symexp_bins(config.bins): out holds config.bins logits
  if config.dist == 'mse':
    return dists.MSE(out[..., 0])
  if config.dist == 'normal':
    return dists.Normal(out[..., 0], jnp.ones_like(out[..., 0]))
  if config.dist == 'binary':
    return dists.Bernoulli(out[..., 0])
  raise ValueError(f'head dist: unknown {config.dist!r}; use one of {HEAD_DISTS}.')


def head_mean(config, dist) -> chex.Array:
  """The point prediction of a head: two-hot mean, regression mean, or P(x = 1)."""
  if config.dist == 'symexp_twohot':
    return dist.mean()
  if config.dist == 'binary':
    return dist.mean
  return dist.mode()


def head_log_prob(config, dist, target: chex.Array) -> chex.Array:
  """log p(target) of a scalar head, target [...] -> [...]."""
  return dist.log_prob(jnp.asarray(target, jnp.float32))


def image_dist(config, mean: chex.Array):
  """Image likelihood over [H, W, C]: MSE (V3) or unit-variance Gaussian (V1/V2)."""
  if config.image_dist == 'mse':
    return dists.MSE(mean, dims=3)
  if config.image_dist == 'normal':
    return dists.Normal(mean, jnp.ones_like(mean), dims=3)
  raise ValueError(f"agent.decoder.image_dist: use 'mse' or 'normal', got {config.image_dist!r}.")


def vector_dist(config, mean: chex.Array):
  """Vector likelihood over [D]: symlog MSE (V3), MSE or unit-variance Gaussian."""
  if config.vector_dist == 'symlog_mse':
    return dists.SymlogMSE(mean, dims=1)
  if config.vector_dist == 'mse':
    return dists.MSE(mean, dims=1)
  if config.vector_dist == 'normal':
    return dists.Normal(mean, jnp.ones_like(mean), dims=1)
  raise ValueError(f"agent.decoder.vector_dist: use 'symlog_mse', 'mse' or 'normal', "
                   f'got {config.vector_dist!r}.')


def shapes_of(obs_space: dict, keys: Sequence[str], image: bool) -> tuple:
  """((key, shape), ...) for images or ((key, D, scalar), ...) for vectors (scalar: shape [])."""
  if image:
    return tuple((key, tuple(int(s) for s in obs_space[key].shape)) for key in keys)
  return tuple((key, int(obs_space[key].shape[0]) if len(obs_space[key].shape) else 1,
                not len(obs_space[key].shape)) for key in keys)

"""The causal tokenizer of Dreamer 4 (Hafner, Yan and Lillicrap 2025, Sec. 3.1, Eq. 5, Fig. 2).

A masked autoencoder over each frame's patches, built from the space-time transformer:
  encoder  tokens [patches, learned latent tokens]; a latent reads every token of its frame,
           a patch reads only patches; the latents' outputs go through Linear -> tanh into a
           small bottleneck z [N_b, D_b];
  decoder  tokens [Linear(z), learned patch queries]; a latent reads only latents, a patch
           query reads latents and patch queries; the queries' outputs become pixels.
Time attention is causal, so frames encode and decode one after another; a frame reads at most
the frames of a training window (`window`), so longer sequences encode as training ones did.
Training drops each patch of a frame with probability p ~ U(0, 0.9), p drawn per frame,
replacing it with a learned embedding (`mae_mask`). The loss is the pixels' MSE; the paper
adds 0.2 LPIPS, which needs a perceptual network for natural images and has none for MinAtar
grids (FIDELITY.md). Losses are divided by their running RMS in the train step (`losses.py`).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from common.nn.nets import dense
from dreamer4 import transformer

PATCH, LATENT = 0, 1
ENCODER_READS = {PATCH: {PATCH}, LATENT: {PATCH, LATENT}}
DECODER_READS = {PATCH: {PATCH, LATENT}, LATENT: {LATENT}}


def patchify(frames, patch: int):
  """[..., H, W, C] -> [..., H/p * W/p, p * p * C] (row-major patches; H, W padded up to p)."""
  *lead, height, width, channels = frames.shape
  pad_h, pad_w = -height % patch, -width % patch
  frames = jnp.pad(frames, [(0, 0)] * len(lead) + [(0, pad_h), (0, pad_w), (0, 0)])
  rows, cols = (height + pad_h) // patch, (width + pad_w) // patch
  x = frames.reshape(*lead, rows, patch, cols, patch, channels)
  x = jnp.moveaxis(x, -4, -3)   # [..., rows, cols, p, p, C]
  return x.reshape(*lead, rows * cols, patch * patch * channels)


def unpatchify(patches, patch: int, shape):
  """The inverse of `patchify` for frames of `shape` [H, W, C] (padding cropped)."""
  height, width, channels = shape
  rows, cols = -(-height // patch), -(-width // patch)
  lead = patches.shape[:-2]
  x = patches.reshape(*lead, rows, cols, patch, patch, channels)
  x = jnp.moveaxis(x, -3, -4).reshape(*lead, rows * patch, cols * patch, channels)
  return x[..., :height, :width, :]


def mae_mask(key, shape, max_mask: float):
  """Boolean [..., P] (True = dropped): p ~ U(0, max_mask) per frame, then Bernoulli(p) per patch."""
  key_p, key_drop = jax.random.split(key)
  p = jax.random.uniform(key_p, shape[:-1] + (1,), maxval=max_mask)
  return jax.random.uniform(key_drop, shape) < p


class Tokenizer(nn.Module):
  """encode(frames [B, T, H, W, C], mask [B, T, P] or None, episode [B, T]) -> z [B, T, N_b, D_b];
  decode(z, episode) -> frames."""
  frame_shape: tuple
  patch: int
  latents: int
  bottleneck: int
  width: int
  layers: int
  heads: int
  kv_heads: int
  temporal_every: int
  mlp_ratio: float = 4.0
  window: int = 0               # frames a frame's encoding reads (its training length)

  def setup(self):
    net = lambda name: transformer.SpaceTimeTransformer(
        self.layers, self.heads, self.kv_heads, self.temporal_every, self.mlp_ratio,
        window=self.window, name=name)
    self.encoder, self.decoder = net('encoder'), net('decoder')
    patches = patchify(jnp.zeros(self.frame_shape), self.patch).shape[0]
    self.patches = patches
    # Learned tokens on the scale of the residual stream: tiny ones start alike and stay alike
    # for hundreds of steps (a symmetric plateau).
    init = nn.initializers.normal(1.0)
    self.latent_tokens = self.param('latent_tokens', init, (self.latents, self.width))
    self.mask_token = self.param('mask_token', init, (self.width,))
    self.patch_position = self.param('patch_position', init, (patches, self.width))
    self.query_tokens = self.param('query_tokens', init, (patches, self.width))
    self.patch_in = dense(self.width, name='patch_in')
    self.to_bottleneck = dense(self.bottleneck, name='to_bottleneck')
    self.from_bottleneck = dense(self.width, name='from_bottleneck')
    # Zero outputs at the start: a large initial error teaches the encoder to ignore its input.
    self.patch_out = dense(self.patch * self.patch * self.frame_shape[-1], outscale=0.0,
                           name='patch_out')
    roles = [PATCH] * patches + [LATENT] * self.latents
    self.encoder_mask = transformer.space_mask(roles, ENCODER_READS)
    self.decoder_mask = transformer.space_mask(roles, DECODER_READS)

  def encode(self, frames, mask=None, episode=None):
    x = self.patch_in(patchify(frames, self.patch))
    if mask is not None:
      x = jnp.where(mask[..., None], self.mask_token, x)
    x = x + self.patch_position
    lead = x.shape[:2]
    latents = jnp.broadcast_to(self.latent_tokens, lead + self.latent_tokens.shape)
    y = self.encoder(jnp.concatenate([x, latents], 2), self.encoder_mask, episode)
    return jnp.tanh(self.to_bottleneck(y[:, :, self.patches:]))

  def decode(self, z, episode=None):
    lead = z.shape[:2]
    queries = jnp.broadcast_to(self.query_tokens, lead + self.query_tokens.shape)
    y = self.decoder(jnp.concatenate([queries, self.from_bottleneck(z)], 2),
                     self.decoder_mask, episode)
    return unpatchify(self.patch_out(y[:, :, :self.patches]), self.patch, self.frame_shape)

  def __call__(self, frames, mask=None, episode=None):
    return self.decode(self.encode(frames, mask, episode), episode)


def build(cfg, frame_shape) -> Tokenizer:
  """The tokenizer of `agent.tokenizer` (TokenizerConfig) for frames of `frame_shape`."""
  net = cfg.net
  return Tokenizer(tuple(frame_shape), cfg.patch, cfg.latents, cfg.bottleneck, net.width,
                   net.layers, net.heads, net.kv_heads, net.temporal_every, net.mlp_ratio,
                   window=cfg.length)

"""The efficient space-time transformer of Dreamer 4 (Hafner, Yan and Lillicrap 2025, Sec. 3.4).

Activations are [B, T, S, D]: T frames of S tokens each. A layer attends either within a
frame (space) or along time at one token position (time); temporal layers come once every
`temporal_every` layers, as the paper's efficiency choice. Each attention is grouped-query
(`kv_heads` <= `heads`), with QK-norm (RMSNorm of queries and keys per head) and rotary
position embeddings (RoPE); the MLP is SwiGLU; every sublayer is pre-RMSNorm with a residual.

Who may read whom:
  * time: a token reads the same position in its own and earlier frames of the same episode
    (`time_mask`), so the model is causal in time and never looks across an episode start;
  * space: a token reads the tokens of its frame that its role may read (`space_mask`): in the
    dynamics model every token reads every token except agent tokens, which only agent tokens
    read (Sec. 3.3: the task cannot leak into the world model's predictions).
Composed over layers this is `block_causal_mask`: frame t reads frames <= t.
"""
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.nn.nets import Norm, dense


def rope(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
  """Rotary position embedding (Su et al. 2021) over the last axis of x [..., N, H, Dh].

  Pairs (x[2i], x[2i+1]) are rotated by the angle position * base^(-2i / Dh).
  `positions` [N] (or broadcastable to x's [..., N]).
  """
  half = x.shape[-1] // 2
  if x.shape[-1] % 2:
    raise ValueError(f'rope: head size {x.shape[-1]} must be even.')
  freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angle = positions.astype(jnp.float32)[..., None] * freq          # [..., N, half]
  cos, sin = jnp.cos(angle)[..., None, :], jnp.sin(angle)[..., None, :]
  x32 = x.astype(jnp.float32)
  even, odd = x32[..., 0::2], x32[..., 1::2]
  rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], -1)
  return rotated.reshape(x.shape).astype(x.dtype)


def time_mask(episode: jax.Array, window: int = 0) -> jax.Array:
  """[B, T] episode ids -> [B, T, T] boolean: query t reads key u iff u <= t, same episode,
  and (with `window` > 0) t - u < window."""
  frames = episode.shape[-1]
  causal = jnp.tril(jnp.ones((frames, frames), bool))
  if window:
    causal &= ~jnp.tril(jnp.ones((frames, frames), bool), -window)
  return causal & (episode[..., :, None] == episode[..., None, :])


def space_mask(roles: Sequence[int], reads: dict) -> np.ndarray:
  """[S, S] boolean over one frame's tokens: query i reads key j iff roles[j] in reads[roles[i]]."""
  roles = list(roles)
  return np.array([[key in reads[query] for key in roles] for query in roles], bool)


def block_causal_mask(roles: Sequence[int], reads: dict, frames: int) -> np.ndarray:
  """The whole [T*S, T*S] mask of a frame sequence (one episode), frame-major.

  Query (t, i) reads key (u, j) iff u <= t and role j is readable by role i. The factorised
  layers never build it; it states what they compose to, and the tests check it.
  """
  space = space_mask(roles, reads)
  return np.kron(np.tril(np.ones((frames, frames), bool)), space)


class Attention(nn.Module):
  """Grouped-query self-attention with QK-norm and RoPE over the second-to-last token axis.

  x [..., N, D], positions [N], mask broadcastable to [..., N, M + N] -> ([..., N, D], (k, v)).
  `past` (k, v) [..., M, kv_heads, Dh] are keys (already rotated) and values of earlier tokens
  that the new ones also read (a key-value cache); (k, v) of the new tokens are returned for it.
  """
  heads: int
  kv_heads: int
  qk_norm: bool = True

  @nn.compact
  def __call__(self, x, positions, mask, past=None):
    width = x.shape[-1]
    if width % self.heads or self.heads % self.kv_heads:
      raise ValueError(f'Attention: width {width} must divide by heads {self.heads}, and heads '
                       f'by kv_heads {self.kv_heads}.')
    head = width // self.heads
    query = dense(self.heads * head, use_bias=False, name='query')(x)
    key = dense(self.kv_heads * head, use_bias=False, name='key')(x)
    value = dense(self.kv_heads * head, use_bias=False, name='value')(x)
    query = query.reshape(x.shape[:-1] + (self.heads, head))
    key = key.reshape(x.shape[:-1] + (self.kv_heads, head))
    value = value.reshape(x.shape[:-1] + (self.kv_heads, head))
    if self.qk_norm:
      query = Norm('rms', 1e-6, name='query_norm')(query)
      key = Norm('rms', 1e-6, name='key_norm')(key)
    query, key = rope(query, positions), rope(key, positions)
    new = (key, value)
    if past is not None:
      key = jnp.concatenate([past[0], key], -3)
      value = jnp.concatenate([past[1], value], -3)
    groups = self.heads // self.kv_heads
    query = query.reshape(query.shape[:-2] + (self.kv_heads, groups, head))
    logits = jnp.einsum('...qkgh,...ukh->...kgqu', query, key) / np.sqrt(head)
    logits = jnp.where(mask[..., None, None, :, :], logits, -1e30)
    weights = jax.nn.softmax(logits.astype(jnp.float32), -1)
    out = jnp.einsum('...kgqu,...ukh->...qkgh', weights, value)
    out = out.reshape(x.shape[:-1] + (width,))
    return dense(width, use_bias=False, name='out')(out), new


class SwiGLU(nn.Module):
  """y = W_out (silu(W_gate x) * W_up x) (Shazeer 2020)."""
  hidden: int

  @nn.compact
  def __call__(self, x):
    gate = dense(self.hidden, use_bias=False, name='gate')(x)
    up = dense(self.hidden, use_bias=False, name='up')(x)
    return dense(x.shape[-1], use_bias=False, name='down')(jax.nn.silu(gate) * up)


class Layer(nn.Module):
  """Pre-norm attention over `axis` ('space' or 'time') and a SwiGLU MLP, each residual.

  (x [B, T, S, D], space [S, S], time [B, T, T]) -> (x, (k, v) of a time layer else None).
  With `past` (a time layer's cached (k, v) [B, S, M, kv, Dh]), `time` is [B, T, M + T] and
  `positions` the new frames' time positions [T].
  """
  axis: str
  heads: int
  kv_heads: int
  mlp_ratio: float = 4.0
  qk_norm: bool = True

  @nn.compact
  def __call__(self, x, space, time, past=None, positions=None):
    attend = Attention(self.heads, self.kv_heads, self.qk_norm, name='attention')
    y = Norm('rms', 1e-6, name='attention_norm')(x)
    kv = None
    if self.axis == 'space':
      y, _ = attend(y, jnp.arange(x.shape[2]), space)
    else:  # [B, T, S, D] -> [B, S, T, D]: each position attends over its own past frames.
      positions = jnp.arange(x.shape[1]) if positions is None else positions
      y, kv = attend(y.swapaxes(1, 2), positions, time[:, None], past)
      y = y.swapaxes(1, 2)
    x = x + y
    y = Norm('rms', 1e-6, name='mlp_norm')(x)
    return x + SwiGLU(int(self.mlp_ratio * x.shape[-1]), name='mlp')(y), kv


def layer_axes(layers: int, temporal_every: int) -> tuple:
  """Layer i attends over time iff (i + 1) % temporal_every == 0, else over space."""
  return tuple('time' if (i + 1) % temporal_every == 0 else 'space' for i in range(layers))


class SpaceTimeTransformer(nn.Module):
  """A stack of space and time layers and a final RMSNorm.

  __call__(x [B, T, S, D], space [S, S] (`space_mask`), episode [B, T] ids) -> [B, T, S, D].
  step(x [B, 1, S, D], space, cache, episode [B], position [B]): one new frame that reads the
  cached frames (`init_cache`) of its episode -> ([B, 1, S, D], its (k, v) per time layer).
  Both compute the same function: frames never read later ones.
  """
  layers: int
  heads: int
  kv_heads: int
  temporal_every: int = 4
  mlp_ratio: float = 4.0
  qk_norm: bool = True
  window: int = 0               # frames a frame reads, itself included (0: all before it)

  def setup(self):
    self.blocks = [Layer(axis, self.heads, self.kv_heads, self.mlp_ratio, self.qk_norm,
                         name=f'layer{i}')
                   for i, axis in enumerate(layer_axes(self.layers, self.temporal_every))]
    self.final_norm = Norm('rms', 1e-6)

  def __call__(self, x, space, episode: Optional[jax.Array] = None):
    if episode is None:
      episode = jnp.zeros(x.shape[:2], jnp.int32)
    time = time_mask(episode, self.window)
    space = jnp.asarray(space)
    for block in self.blocks:
      x, _ = block(x, space, time)
    return self.final_norm(x)

  def step(self, x, space, cache, episode, position):
    space = jnp.asarray(space)
    # The new frame reads cached frames of its episode, and itself.
    time = jnp.concatenate([cache['episode'] == episode[:, None],
                            jnp.ones_like(episode[:, None], bool)], 1)[:, None]
    new, index = [], 0
    for block in self.blocks:
      past = None
      if block.axis == 'time':
        past = (cache['key'][index], cache['value'][index])
        index += 1
      x, kv = block(x, space, time, past, position[:, None, None])
      if kv is not None:
        new.append(kv)
    return self.final_norm(x), new


def time_layers(layers: int, temporal_every: int) -> int:
  return sum(axis == 'time' for axis in layer_axes(layers, temporal_every))


def init_cache(batch, slots, tokens, layers, temporal_every, heads, kv_heads, width) -> dict:
  """An empty key-value cache of `slots` frames: keys and values [L_time, B, S, slots, kv, Dh]
  and each slot's episode id (-1: empty, read by no frame)."""
  shape = (time_layers(layers, temporal_every), batch, tokens, slots, kv_heads, width // heads)
  return {'key': jnp.zeros(shape), 'value': jnp.zeros(shape),
          'episode': -jnp.ones((batch, slots), jnp.int32)}


def write_cache(cache: dict, new: list, episode, position) -> dict:
  """Stores one frame's (k, v) per time layer ([B, S, 1, kv, Dh] each) at slot position % slots."""
  slots = cache['episode'].shape[1]
  slot = position % slots
  rows = jnp.arange(slot.shape[0])
  # Indexed by rows and slots apart, the set axes come first: [B, L, S, kv, Dh].
  key = jnp.stack([k[:, :, 0] for k, _ in new], 1)
  value = jnp.stack([v[:, :, 0] for _, v in new], 1)
  return {'key': cache['key'].at[:, rows, :, slot].set(key),
          'value': cache['value'].at[:, rows, :, slot].set(value),
          'episode': cache['episode'].at[rows, slot].set(episode)}

"""The interactive dynamics model and agent heads of Dreamer 4 (Hafner, Yan and Lillicrap 2025,
Sec. 3.2-3.3).

Each frame t is a group of tokens, in this order:
  action    learned embedding + embedding of the action that led to frame t; only the learned
            embedding where it is unknown (an unlabelled episode, an episode's first frame);
  level     one token: [embedding of the signal level tau, embedding of the step size d]
            (both discrete: tau on the 1 / K_max grid, d = 2^-k), channels concatenated;
  latents   the tokenizer's z of frame t, noised to tau, linearly packed into S_z tokens;
  registers S_r learned tokens;
  agent     a learned token (the task embedding of a one-task setting); it reads every token,
            and no other token reads it (`READS`), so the task cannot shape the world model.
The latents' outputs are the x-prediction f(z_tau, tau, d, a) of frame t's clean latents; the
agent token's output h_t feeds the heads.

Heads (Sec. 3.3): an MLP per head on h_t (stop-gradient in phase 3) with one output layer per
multi-token distance n = 0..L (Eq. 9): the policy over a_{t+n}, the reward and continue flag
that arrive with frame t+n (symexp two-hot reward as DreamerV3); the value (Eq. 10) has one
output.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.nn.nets import dense
from dreamer4 import transformer

ACTION, LEVEL, LATENT, REGISTER, AGENT = range(5)
WORLD = {ACTION, LEVEL, LATENT, REGISTER}
READS = {role: WORLD for role in WORLD} | {AGENT: WORLD | {AGENT}}


def roles(spatial: int, registers: int) -> list:
  return [ACTION, LEVEL] + [LATENT] * spatial + [REGISTER] * registers + [AGENT]


def level_indices(tau, d, k_max: int):
  """Embedding indices: tau * K_max in 0..K_max, log2(1 / d) in 0..log2(K_max)."""
  tau_index = jnp.clip(jnp.round(tau * k_max), 0, k_max).astype(jnp.int32)
  d_index = jnp.clip(jnp.round(-jnp.log2(d)), 0, np.log2(k_max)).astype(jnp.int32)
  return tau_index, d_index


def pack(z, spatial: int):
  """Tokenizer latents [B, T, N_b, D_b] -> [B, T, S_z, N_b D_b / S_z] (the paper's reshape)."""
  return z.reshape(z.shape[:2] + (spatial, -1))


class Dynamics(nn.Module):
  """__call__(z [B, T, S_z, C], tau [B, T], d [B, T], action [B, T], has_action [B, T],
  episode [B, T]) -> (x-prediction [B, T, S_z, C], agent output h [B, T, W]).

  step(cache, z [B, S_z, C], tau [B], d [B], action [B], has_action [B], episode [B],
  position [B]) -> (x-prediction [B, S_z, C], h [B, W], the frame's keys and values): one
  frame that reads the cached frames of its episode (`transformer.init_cache`, `write_cache`),
  for generation and acting; the same function as __call__ at that frame.
  """
  actions: int
  spatial: int
  registers: int
  k_max: int
  width: int
  layers: int
  heads: int
  kv_heads: int
  temporal_every: int
  mlp_ratio: float = 4.0

  def setup(self):
    init = nn.initializers.normal(1.0)   # on the residual stream's scale (tokenizer.py)
    half = self.width // 2
    self.action_token = self.param('action_token', init, (self.width,))
    self.action_embed = nn.Embed(self.actions, self.width, embedding_init=init)
    self.tau_embed = nn.Embed(self.k_max + 1, half, embedding_init=init)
    self.step_embed = nn.Embed(int(np.log2(self.k_max)) + 1, self.width - half,
                               embedding_init=init)
    self.latent_in = dense(self.width)
    self.registers_tokens = self.param('registers', init, (self.registers, self.width))
    self.agent_token = self.param('agent_token', init, (self.width,))
    self.transformer = transformer.SpaceTimeTransformer(
        self.layers, self.heads, self.kv_heads, self.temporal_every, self.mlp_ratio)
    self.space = transformer.space_mask(roles(self.spatial, self.registers), READS)

  def tokens(self, z, tau, d, action, has_action):
    """The frames' tokens [..., S, W] from z [..., S_z, C] and per-frame inputs [...]."""
    lead = z.shape[:-2]
    act = self.action_token + jnp.where(has_action[..., None], self.action_embed(action), 0.0)
    tau_index, d_index = level_indices(tau, d, self.k_max)
    level = jnp.concatenate([self.tau_embed(tau_index), self.step_embed(d_index)], -1)
    return jnp.concatenate([
        act[..., None, :], level[..., None, :], self.latent_in(z),
        jnp.broadcast_to(self.registers_tokens, lead + self.registers_tokens.shape),
        jnp.broadcast_to(self.agent_token, lead + (1, self.width))], -2)

  def outputs(self, y, channels):
    """(x-prediction from the latent tokens, h from the agent token)."""
    return self.latent_out(y[..., 2:2 + self.spatial, :], channels), y[..., -1, :]

  @nn.compact
  def latent_out(self, y, channels):
    return dense(channels, outscale=0.0, name='latent_out')(y)

  def __call__(self, z, tau, d, action, has_action, episode):
    y = self.transformer(self.tokens(z, tau, d, action, has_action), self.space, episode)
    return self.outputs(y, z.shape[-1])

  def step(self, cache, z, tau, d, action, has_action, episode, position):
    x = self.tokens(z, tau, d, action, has_action)[:, None]
    y, new = self.transformer.step(x, self.space, cache, episode, position)
    prediction, h = self.outputs(y[:, 0], z.shape[-1])
    return prediction, h, new



def empty_cache(model: Dynamics, batch: int, slots: int) -> dict:
  """An empty key-value cache of `slots` frames for `model.step`."""
  return transformer.init_cache(batch, slots, len(roles(model.spatial, model.registers)),
                                model.layers, model.temporal_every, model.heads,
                                model.kv_heads, model.width)


class Head(nn.Module):
  """MLP(h) with `outputs` output layers of `size` units: [..., W] -> [..., outputs, size]."""
  outputs: int
  size: int
  units: int
  zero_init: bool = False

  @nn.compact
  def __call__(self, h):
    x = jax.nn.silu(nn.LayerNorm(name='norm')(dense(self.units, name='hidden')(h)))
    init = nn.initializers.zeros if self.zero_init else nn.initializers.lecun_normal()
    kernel = self.param('out_kernel', init, (self.outputs, self.units, self.size))
    bias = self.param('out_bias', nn.initializers.zeros, (self.outputs, self.size))
    return jnp.einsum('...u,nus->...ns', x, kernel) + bias


class Heads(nn.Module):
  """The agent heads over h [..., W]: policy and reward/continue with MTP, and the value."""
  actions: int
  mtp: int
  bins: int
  units: int

  def setup(self):
    n = self.mtp + 1
    self.policy_head = Head(n, self.actions, self.units, name='policy')
    self.reward_head = Head(n, self.bins, self.units, zero_init=True, name='reward')
    self.continue_head = Head(n, 1, self.units, name='continue')
    self.value_head = Head(1, self.bins, self.units, zero_init=True, name='value')

  def policy(self, h):
    return self.policy_head(h)

  def reward(self, h):
    return self.reward_head(h)

  def cont(self, h):
    return self.continue_head(h)[..., 0]

  def value(self, h):
    return self.value_head(h)[..., 0, :]

  def __call__(self, h):
    return self.policy(h), self.reward(h), self.cont(h), self.value(h)


def build(cfg, actions: int):
  """(Dynamics, Heads) of `agent` (Dreamer4Config)."""
  dyn, net = cfg.dynamics, cfg.dynamics.net
  return (Dynamics(actions, dyn.spatial, dyn.registers, dyn.k_max, net.width, net.layers,
                   net.heads, net.kv_heads, net.temporal_every, net.mlp_ratio),
          Heads(actions, cfg.agent.mtp, cfg.agent.bins, cfg.agent.head_units))

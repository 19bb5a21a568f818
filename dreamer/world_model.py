"""Dreamer's world model: encoder, RSSM, decoder, reward and continue heads.

DreamerV3 (Hafner et al. 2023, Sec. 2 "World model learning", Eq. 4-5):

  L(phi) = E[ sum_t  b_pred L_pred + b_dyn L_dyn + b_rep L_rep ]
  L_pred = -ln p(x_t | z_t, h_t) - ln p(r_t | z_t, h_t) - ln p(c_t | z_t, h_t)
  L_dyn  = max(1, KL[sg(q(z_t | h_t, x_t)) || p(z_t | h_t)])
  L_rep  = max(1, KL[q(z_t | h_t, x_t) || sg(p(z_t | h_t))])

with b_pred = 1, b_dyn = 1, b_rep = 0.1 (the KL part is `common.nn.kl.kl_loss`).
Images are predicted as [0, 1] pixels (MSE), vectors in symlog space, rewards
with a symexp two-hot head, and continue flags c_t = 1 - terminal_t with a
Bernoulli head whose target is scaled by the discount 1 - 1/horizon (V3 code's
`contdisc`), so imagination needs no separate discount.

Batches are dicts of [B, T, ...]; `action[t]` follows step t, so the model is fed
prev_action[t] = action[t-1] (zeros where is_first).

Replay context (V3 code, `agent.replay_context` K = 1): a replayed window holds K + T
steps; the model starts at step K from the posterior latent stored in replay for step
K - 1 (written by the policy when the step was collected, then by every training pass
over it) with the real previous action action[K - 1], instead of restarting every
window mid-episode from the initial state. Latents are stored compactly: deter as
bfloat16 bits (uint16), one-hot stoch as class indices (uint8). Without context the
first step of a window starts from the initial state with a zero action.
"""
import dataclasses
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from common.nn import kl as kl_lib
from common.nn import rssm as rssm_lib
from common.planning import geometry
from dreamer import networks

sg = jax.lax.stop_gradient


class WorldModel(NamedTuple):
  encoder: networks.Encoder
  rssm: rssm_lib.RSSM
  decoder: networks.Decoder
  reward_head: networks.Head
  continue_head: networks.Head
  config: object           # DreamerConfig
  image_shapes: tuple      # ((key, (H, W, C)), ...)
  vector_dims: tuple       # ((key, D, scalar), ...)
  discrete: bool
  action_dim: int


def make(config, obs_space: dict, act_space, dtype: str = 'float32') -> WorldModel:
  """Builds the world-model modules for an observation and action space."""
  image_keys, vector_keys = networks.split_obs_keys(obs_space)
  image_shapes = networks.shapes_of(obs_space, image_keys, image=True)
  vector_dims = networks.shapes_of(obs_space, vector_keys, image=False)
  discrete = bool(getattr(act_space, 'discrete', False))
  action_dim = int(act_space.n) if discrete else int(act_space.shape[0])
  rssm_config = config.rssm
  if rssm_config.dtype != dtype:
    rssm_config = dataclasses.replace(rssm_config, dtype=dtype)
  return WorldModel(
      encoder=networks.Encoder(config.encoder, image_shapes, vector_dims, dtype),
      rssm=rssm_lib.RSSM(rssm_config, action_dim),
      decoder=networks.Decoder(config.decoder, image_shapes, vector_dims, rssm_config.deter,
                               dtype),
      reward_head=networks.make_head(config.reward_head, dtype),
      continue_head=networks.make_head(config.continue_head, dtype),
      config=config, image_shapes=image_shapes, vector_dims=vector_dims,
      discrete=discrete, action_dim=action_dim)


def feat_dim(wm: WorldModel) -> int:
  c = wm.rssm.config
  return c.deter + c.stoch * max(c.classes, 1)


def dummy_obs(wm: WorldModel, lead: tuple) -> dict:
  obs = {key: jnp.zeros(lead + shape, jnp.uint8) for key, shape in wm.image_shapes}
  obs.update({key: jnp.zeros(lead + (() if scalar else (dim,)), jnp.float32)
              for key, dim, scalar in wm.vector_dims})
  return obs


def init_params(wm: WorldModel, key: chex.PRNGKey) -> dict:
  """{'encoder', 'rssm', 'decoder', 'reward', 'continue'} parameter pytrees."""
  keys = jax.random.split(key, 5)
  obs = dummy_obs(wm, (1,))
  encoder = wm.encoder.init(keys[0], obs)['params']
  embed_dim = wm.encoder.apply({'params': encoder}, obs).shape[-1]
  feat = jnp.zeros((1, feat_dim(wm)), jnp.float32)
  return {
      'encoder': encoder,
      'rssm': rssm_lib.init_params(wm.rssm, keys[1], embed_dim),
      'decoder': wm.decoder.init(keys[2], feat)['params'],
      'reward': wm.reward_head.init(keys[3], feat)['params'],
      'continue': wm.continue_head.init(keys[4], feat)['params'],
  }


def encode(wm: WorldModel, params: dict, obs: dict) -> chex.Array:
  """Embedding [..., E] of an observation dict with leaves [..., *shape]."""
  return wm.encoder.apply({'params': params['encoder']}, obs)


def action_to_float(wm: WorldModel, action: chex.Array) -> chex.Array:
  """Discrete int [...] -> one-hot float [..., A]; continuous float [..., A] unchanged."""
  if wm.discrete:
    if jnp.issubdtype(action.dtype, jnp.integer):
      return jax.nn.one_hot(action, wm.action_dim, dtype=jnp.float32)
    return action.astype(jnp.float32)
  return action.astype(jnp.float32)


def previous_actions(action: chex.Array, is_first: chex.Array) -> chex.Array:
  """prev_action[t] = action[t-1], zeros at t = 0 and where is_first: [B, T, A] -> [B, T, A]."""
  chex.assert_rank([action, is_first], [3, 2])
  prev = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
  return jnp.where(is_first[..., None], 0.0, prev)


def reward_continue(wm: WorldModel, params: dict, feat: chex.Array) -> tuple:
  """(reward [...], continue probability [...]) predicted at features [..., F]."""
  reward_dist = networks.head_dist(
      wm.config.reward_head, wm.reward_head.apply({'params': params['reward']}, feat))
  reward = networks.head_mean(wm.config.reward_head, reward_dist)
  if not wm.config.predict_continue:  # V1, V2 on DMC: episodes never end in imagination
    return reward, jnp.ones_like(reward)
  cont_dist = networks.head_dist(
      wm.config.continue_head, wm.continue_head.apply({'params': params['continue']}, feat))
  return reward, networks.head_mean(wm.config.continue_head, cont_dist)


def transform_reward(config, reward: chex.Array) -> chex.Array:
  if config.reward_transform == 'tanh':
    return jnp.tanh(reward)
  if config.reward_transform == 'none':
    return reward
  raise ValueError(f"agent.reward_transform: use 'none' or 'tanh', got {config.reward_transform!r}.")


CONTEXT_KEYS = ('context/deter', 'context/stoch')


def context_entries(wm: WorldModel, latent: rssm_lib.RSSMState) -> dict:
  """The compact replay entries of posterior latents [...]: {'context/deter': uint16
  bfloat16 bits [..., D], 'context/stoch': uint8 class indices [..., S]}."""
  if not wm.rssm.config.classes:
    raise ValueError('agent.replay_context: needs a categorical RSSM (rssm.classes > 0); '
                     'set agent.replay_context=0 for a Gaussian latent.')
  if wm.rssm.config.classes > 256:
    raise ValueError(f'agent.replay_context: stores classes as uint8, so rssm.classes must be '
                     f'<= 256, got {wm.rssm.config.classes}.')
  deter = jax.lax.bitcast_convert_type(latent.deter.astype(jnp.bfloat16), jnp.uint16)
  stoch = jnp.argmax(latent.stoch, -1).astype(jnp.uint8)
  return {'context/deter': deter, 'context/stoch': stoch}


def context_latent(wm: WorldModel, entries: dict) -> rssm_lib.RSSMState:
  """Inverse of `context_entries`: RSSMState [...] (float32 deter, one-hot stoch)."""
  c = wm.rssm.config
  deter = jax.lax.bitcast_convert_type(jnp.asarray(entries['context/deter']), jnp.bfloat16)
  stoch = jax.nn.one_hot(entries['context/stoch'], c.classes, dtype=jnp.float32)
  return rssm_lib.RSSMState(deter.astype(jnp.float32), stoch,
                            {'logits': jnp.zeros_like(stoch)})


def split_context(wm: WorldModel, batch: dict) -> tuple:
  """(start state [B] or None, batch of the trained steps [B, T], prev_action [B, T, A]).

  With `replay_context` K, `batch` holds K + T steps: the window starts from the latent
  stored for step K - 1 with prev_action[0] = action[K - 1]. Without it, every window
  starts from the initial state (is_first forced at t = 0, zero previous action).
  """
  context = wm.config.replay_context
  action = action_to_float(wm, batch['action'])
  if not context:
    is_first = jnp.asarray(batch['is_first']).astype(bool).at[:, 0].set(True)
    rest = dict(batch, is_first=is_first)
    return None, rest, previous_actions(action, is_first)
  missing = [k for k in CONTEXT_KEYS if k not in batch]
  if missing:
    raise ValueError(f'batch: missing {missing}; agent.replay_context={context} needs the '
                     'latents the policy stores in replay (or set agent.replay_context=0).')
  if batch['is_first'].shape[1] <= context:
    raise ValueError(f'batch: {batch["is_first"].shape[1]} steps, need more than '
                     f'agent.replay_context={context}.')
  start = context_latent(wm, {k: batch[k][:, context - 1] for k in CONTEXT_KEYS})
  rest = {k: v[:, context:] for k, v in batch.items()}
  is_first = jnp.asarray(rest['is_first']).astype(bool)
  prev_action = jnp.where(is_first[..., None], 0.0, action[:, context - 1:-1])
  return start, rest, prev_action


def observe(wm: WorldModel, params: dict, batch: dict, key: chex.PRNGKey) -> tuple:
  """Posterior and prior over a batch, from the replay context or the initial state.

  Returns (post, prior, feat [B, T, F], embed [B, T, E], rest): `rest` is the batch of the
  T trained steps (the input without its K context steps).
  """
  start, rest, prev_action = split_context(wm, batch)
  embed = encode(wm, params, {k: rest[k] for k, _ in wm.image_shapes} |
                 {k: rest[k] for k, _, _ in wm.vector_dims})
  is_first = jnp.asarray(rest['is_first']).astype(bool)
  post, prior = rssm_lib.observe(wm.rssm, params['rssm'], embed, prev_action, is_first, start,
                                 key)
  feat = wm.rssm.apply(params['rssm'], post, method=rssm_lib.RSSM.feat)
  return post, prior, feat, embed, rest


def loss(wm: WorldModel, params: dict, batch: dict, key: chex.PRNGKey) -> tuple:
  """World-model loss (V3, Eq. 4-5) on a batch [B, T, ...].

  Returns (loss [], (post RSSMState [B, T], feat [B, T, F], rest, metrics)): `rest` is the
  batch of the T trained steps (see `observe`).
  """
  cfg = wm.config
  chex.assert_rank(batch['is_first'], 2)
  post, prior, feat, _, batch = observe(wm, params, batch, key)
  losses = {}
  recon = wm.decoder.apply({'params': params['decoder']}, feat)
  for key_, _ in wm.image_shapes:
    target = batch[key_].astype(jnp.float32) / 255.0
    losses[f'rec_{key_}'] = (
        -networks.image_dist(cfg.decoder, recon[key_]).log_prob(target), cfg.image_scale)
  for key_, dim, scalar in wm.vector_dims:
    mean, target = recon[key_], batch[key_].astype(jnp.float32)
    if scalar:
      mean, target = mean[..., None], target[..., None]
    losses[f'rec_{key_}'] = (
        -networks.vector_dist(cfg.decoder, mean).log_prob(target), cfg.vector_scale)
  reward_out = wm.reward_head.apply({'params': params['reward']}, feat)
  reward_dist = networks.head_dist(cfg.reward_head, reward_out)
  reward = transform_reward(cfg, batch['reward'].astype(jnp.float32))
  losses['reward'] = (-reward_dist.log_prob(reward), cfg.reward_scale)
  cont_out = wm.continue_head.apply({'params': params['continue']}, feat)
  cont_dist = networks.head_dist(cfg.continue_head, cont_out)
  cont_target = 1.0 - batch['is_terminal'].astype(jnp.float32)
  if cfg.continue_discount:
    cont_target = cont_target * (1.0 - 1.0 / cfg.horizon)
  if cfg.predict_continue:  # V2 discount head (scale 5 on Atari), V3 continue head
    losses['continue'] = (-cont_dist.log_prob(cont_target), cfg.continue_scale)

  kl_value, kl_metrics = kl_lib.kl_loss(post.stats, prior.stats, cfg.kl)
  total = kl_value
  metrics = {f'{k}_loss': v.mean() for k, (v, _) in losses.items()}
  for value, scale in losses.values():
    chex.assert_rank(value, 2)
    total = total + scale * value.mean()
  metrics.update(kl_metrics)
  if cfg.straighten_scale:   # Wang et al.'s regulariser; gradients reach encoder and RSSM
    straighten = geometry.straightening_loss(feat, batch['is_first'])
    total = total + cfg.straighten_scale * straighten
    metrics['straighten_loss'] = straighten
  metrics['model_loss'] = total
  metrics['reward_pred_mean'] = networks.head_mean(cfg.reward_head, reward_dist).mean()
  metrics['reward_mean'] = reward.mean()
  if cfg.predict_continue:
    metrics['continue_pred_mean'] = networks.head_mean(cfg.continue_head, cont_dist).mean()
  return total, (post, feat, batch, sg(metrics))


def observe_step(wm: WorldModel, params: dict, latent: rssm_lib.RSSMState, action: chex.Array,
                 obs: dict, key: chex.PRNGKey) -> rssm_lib.RSSMState:
  """The posterior [N] after observation `obs` [N, ...] that followed `action` [N, A] from
  `latent` [N] (is_first resets to the initial state): one step of acting."""
  embed = encode(wm, params, obs)
  is_first = jnp.asarray(obs['is_first']).astype(bool)
  return wm.rssm.apply(params['rssm'], latent, action, embed, is_first, key,
                       method=rssm_lib.RSSM.post_step)


def stoch_vector(wm: WorldModel, state: rssm_lib.RSSMState) -> chex.Array:
  """The stochastic state as a vector [..., D]: V2/V3's categoricals [..., stoch, classes]
  flattened, V1's Gaussian sample as it is."""
  stoch = state.stoch
  return stoch.reshape(stoch.shape[:-2] + (-1,)) if wm.rssm.config.classes else stoch


def decode_images(wm: WorldModel, params: dict, feat: chex.Array) -> dict:
  """{image key: [..., H, W, C] in [0, 1]} decoded from features [..., F]."""
  recon = wm.decoder.apply({'params': params['decoder']}, feat)
  return {key: jnp.clip(recon[key], 0.0, 1.0) for key, _ in wm.image_shapes}

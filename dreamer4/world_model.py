"""Dreamer 4's world-model objectives: the tokenizer's (Eq. 5), shortcut forcing (Eq. 6-8) and
the agent finetuning's multi-token prediction (Eq. 9). Pure loss functions of
(params, batch, key); `stages.py` jits and optimises them.
"""
import jax
import jax.numpy as jnp

from dreamer4 import dynamics as dynamics_lib
from dreamer4 import losses, shortcut, tokenizer as tokenizer_lib

IMAGE_SHARE = 0.3   # sequences trained as separate images (Sec. 4: start-frame generation)


def tokenizer_loss(model, params, batch, key, max_mask: float):
  """Masked-autoencoding MSE of the frames [B, T, H, W, C] (Eq. 5 without LPIPS)."""
  frames = batch['frames']
  patches = tokenizer_lib.patchify(frames[:, :, :, :, :1], model.patch).shape[2]
  mask = tokenizer_lib.mae_mask(key, frames.shape[:2] + (patches,), max_mask)
  recon = model.apply({'params': params}, frames, mask, batch['episode'])
  mse = jnp.mean(jnp.square(recon - frames))
  return {'tokenizer_mse': mse}, {'tokenizer_mse': mse, 'mask_share': mask.mean()}


def encode(model, params, frames, episode, spatial: int):
  """Clean packed latents [B, T, S_z, C] of frames (no masking), stop-gradient."""
  z = model.apply({'params': params}, frames, None, episode, method=model.encode)
  return jax.lax.stop_gradient(dynamics_lib.pack(z, spatial))


def action_inputs(batch):
  """The action that led to each frame (a_{t-1}) and whether it is known: unknown at a
  window's first frame, an episode's first frame and in unlabelled episodes."""
  action, known, first = batch['action'], batch['has_action'], batch['is_first']
  prev = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
  prev_known = jnp.concatenate([jnp.zeros_like(known[:, :1]), known[:, :-1]], 1)
  return prev, prev_known & ~first


def image_episodes(key, episode):
  """(episode ids, alone [B, 1]): IMAGE_SHARE of the sequences become separate images, each
  frame its own episode, so no frame reads another, in the tokenizer or the dynamics."""
  batch, frames = episode.shape
  alone = jax.random.uniform(key, (batch, 1)) < IMAGE_SHARE
  unique = -1 - (jnp.arange(batch)[:, None] * frames + jnp.arange(frames)[None])
  return jnp.where(alone, unique, episode), alone


def dynamics_forward(model, params, encode_fn, batch, key, k_max: int):
  """Shortcut-forcing loss (Eq. 6-8) of the frames' packed latents `encode_fn(frames,
  episode)` [B, T, S, C], the agent outputs h, the metrics and which rows are images."""
  key_level, key_noise, key_images = jax.random.split(key, 3)
  episode, alone = image_episodes(key_images, batch['episode'])
  z = encode_fn(batch['frames'], episode)
  tau, d = shortcut.sample_levels(key_level, z.shape[:2], k_max)
  noisy = shortcut.noised(z, jax.random.normal(key_noise, z.shape), tau)
  action, known = action_inputs(batch)
  known = known & ~alone   # an image has no past, so no action led to it
  apply = lambda p, x, t, s: model.apply({'params': p}, x, t, s, action, known, episode)
  prediction, h = apply(params, noisy, tau, d)
  frozen = jax.lax.stop_gradient(params)
  target = shortcut.shortcut_targets(lambda x, t, s: apply(frozen, x, t, s)[0],
                                     noisy, tau, d, 1.0 / k_max)
  per_frame, weight = shortcut.shortcut_loss(prediction, z, noisy, tau, d, target, 1.0 / k_max)
  loss = jnp.mean(weight * per_frame)
  smallest = d <= 1.0 / k_max
  metrics = {'dynamics_loss': loss,
             'flow_loss': losses.masked_mean(per_frame, smallest),
             'bootstrap_loss': losses.masked_mean(per_frame, ~smallest)}
  return loss, h, metrics, alone


def agent_losses(heads, head_params, h, batch, mtp: int, alone):
  """Behaviour cloning, reward and continue heads with multi-token prediction (Eq. 9).

  From h_t: a_{t+n}, r_{t+n} and c_{t+n} (reward[t] arrives with frame t, which h_t has seen),
  n = 0..L, each masked past the window, the episode or (actions) unlabelled steps; rows
  trained as separate images (`alone` [B, 1]) have no history for the heads and are left out.
  """
  episode = batch['episode']
  everywhere = jnp.broadcast_to(~alone, batch['is_first'].shape)
  policy, reward, cont, _ = heads.apply({'params': head_params}, h)
  actions, action_mask = losses.mtp_targets(batch['action'], episode,
                                            batch['has_action'] & everywhere, mtp, 0)
  rewards, reward_mask = losses.mtp_targets(batch['reward'], episode, everywhere, mtp, 0)
  reward_mask = reward_mask & everywhere[:, :, None]
  continues, _ = losses.mtp_targets(1.0 - batch['is_terminal'].astype(jnp.float32), episode,
                                    everywhere, mtp, 0)
  action_mask = action_mask & everywhere[:, :, None]
  bc = losses.masked_mean(-losses.policy_log_prob(policy, actions), action_mask)
  reward_nll = losses.masked_mean(losses.twohot_nll(reward, rewards), reward_mask)
  cont_nll = losses.masked_mean(
      -(continues * jax.nn.log_sigmoid(cont) + (1 - continues) * jax.nn.log_sigmoid(-cont)),
      reward_mask)
  return {'bc_loss': bc, 'reward_loss': reward_nll, 'continue_loss': cont_nll}

"""The training stages of Dreamer 4 (Hafner, Yan and Lillicrap 2025, Algorithm 1), each resumable:

  tokenizer  the causal tokenizer on the dataset's frames (Eq. 5)          -> tokenizer/
  dynamics   shortcut forcing on the tokenizer's latents (Eq. 7)          -> dynamics/
  finetune   phase 2: dynamics + behaviour cloning, reward, continue (Eq. 9) -> finetune/
  imagine    phase 3: policy (PMPO, Eq. 11) and value (Eq. 10) heads in imagination, the
             transformer and the other heads frozen, pi_prior the phase-2 policy -> imagine/
A stage resumes from its newest checkpoint and is skipped once finished.
"""
import os
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.run.checkpoint import Checkpointer
from dreamer4 import data as data_lib
from dreamer4 import dynamics as dynamics_lib
from dreamer4 import imagine as imagine_lib
from dreamer4 import losses, tokenizer as tokenizer_lib, world_model


def run_path(config, *parts):
  return os.path.join(config.run.logdir, *parts)


def load_dataset(config) -> data_lib.Dataset:
  return data_lib.Dataset(config.run.offline_replay, config.env.name,
                          config.agent.dynamics.labelled, config.run.seed)


def num_actions(config) -> int:
  from common import envs   # pylint: disable=g-import-not-at-top
  return int(envs.make_jax(config.env).act_space.high) + 1


class Models:
  """The networks and their initial parameters for one config and frame shape."""

  def __init__(self, config, frame_shape):
    agent = config.agent
    self.config = config
    self.frame_shape = tuple(frame_shape)
    self.actions = num_actions(config)
    self.tokenizer = tokenizer_lib.build(agent.tokenizer, frame_shape)
    self.dynamics, self.heads = dynamics_lib.build(agent, self.actions)
    self.spatial = agent.dynamics.spatial

  def init(self, key):
    agent = self.config.agent
    key_tok, key_dyn, key_heads = jax.random.split(key, 3)
    frames = jnp.zeros((1, 2) + self.frame_shape)
    episode = jnp.zeros((1, 2), jnp.int32)
    tok = self.tokenizer.init(key_tok, frames)['params']
    channels = agent.tokenizer.latents * agent.tokenizer.bottleneck // self.spatial
    z = jnp.zeros((1, 2, self.spatial, channels))
    zeros = jnp.zeros((1, 2))
    dyn = self.dynamics.init(key_dyn, z, zeros, zeros + 1, episode, episode.astype(bool),
                             episode)['params']
    heads = self.heads.init(key_heads, jnp.zeros((1, agent.dynamics.net.width)))['params']
    return {'tokenizer': tok, 'dynamics': dyn, 'heads': heads}

  def generator(self):
    dyn = self.config.agent.dynamics
    return imagine_lib.Generator(self.dynamics, self.heads, dyn.k_max, dyn.sample_steps,
                                 dyn.context_noise, dyn.length)


def run_stage(config, logger, name, state, step_fn, batch_fn, total_steps):
  """Trains `state` with `step_fn(state, batch) -> (state, metrics)` to `total_steps`,
  checkpointing every run.save_every seconds and at the end; returns the final state."""
  checkpointer = Checkpointer(run_path(config, name), keep=config.run.keep_checkpoints)
  step = 0
  if checkpointer.latest_step() is not None:
    state, meta = checkpointer.restore(state)
    step = int(meta['step'])
  if step >= total_steps:
    print(f'{name}: trained ({step} steps); skipped')
    checkpointer.close()
    return state
  print(f'{name}: {total_steps} steps (from {step})')
  step_fn = jax.jit(step_fn, donate_argnums=0)
  state = jax.tree.map(jnp.array, state)   # a copy: the donated state may share arrays
  rng = np.random.default_rng([config.run.seed, step, zlib.crc32(name.encode())])
  last_save = last_log = time.time()
  while step < total_steps:
    state, metrics = step_fn(state, batch_fn(rng))
    step += 1
    logger.add(metrics, prefix=name)
    now = time.time()
    if now - last_log >= config.run.log_every or step == total_steps:
      logger.write(step, fps=False)
      last_log = now
    if now - last_save >= config.run.save_every or step == total_steps:
      checkpointer.save(step, state, {'step': step})
      last_save = now
  checkpointer.close()
  return state


def _optimizer(lr):
  return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))


def _state(params, optimizer, key, loss_names):
  return {'params': params, 'opt_state': optimizer.init(params), 'key': key,
          'rms': losses.rms_init(loss_names)}


def _update(state, optimizer, loss_fn, decay):
  """One optimiser step on the RMS-normalised sum of loss_fn(params, key)'s losses."""
  key, loss_key = jax.random.split(state['key'])

  def total(params):
    parts, metrics = loss_fn(params, loss_key)
    value, rms = losses.rms_normalise(state['rms'], parts, decay)
    return value, (metrics, rms)

  grads, (metrics, rms) = jax.grad(total, has_aux=True)(state['params'])
  updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
  metrics['grad_norm'] = optax.global_norm(grads)
  return {'params': optax.apply_updates(state['params'], updates), 'opt_state': opt_state,
          'key': key, 'rms': rms}, metrics


def _batch_fn(dataset, batch, length):
  return lambda rng: dataset.sample(batch, length, rng)


def train_tokenizer(config, logger, models, dataset, params):
  cfg, decay = config.agent.tokenizer, config.agent.agent.loss_ema
  optimizer = _optimizer(cfg.lr)
  state = _state(params['tokenizer'], optimizer, jax.random.PRNGKey(config.run.seed),
                 ['tokenizer_mse'])

  def step_fn(state, batch):
    return _update(state, optimizer, lambda p, k: world_model.tokenizer_loss(
        models.tokenizer, p, batch, k, cfg.max_mask), decay)

  state = run_stage(config, logger, 'tokenizer', state, step_fn,
                    _batch_fn(dataset, cfg.batch, cfg.length), cfg.steps)
  return dict(params, tokenizer=state['params'])


def _dynamics_loss(models, params_tok, k_max):
  encode_fn = lambda frames, episode: world_model.encode(models.tokenizer, params_tok, frames,
                                                         episode, models.spatial)
  def loss_fn(params, batch, key):
    return world_model.dynamics_forward(models.dynamics, params, encode_fn, batch, key, k_max)
  return loss_fn


def train_dynamics(config, logger, models, dataset, params):
  cfg, decay = config.agent.dynamics, config.agent.agent.loss_ema
  optimizer = _optimizer(cfg.lr)
  state = _state(params['dynamics'], optimizer, jax.random.PRNGKey(config.run.seed + 1),
                 ['dynamics_loss'])
  forward = _dynamics_loss(models, params['tokenizer'], cfg.k_max)

  def step_fn(state, batch):
    def loss_fn(p, k):
      loss, _, metrics, _ = forward(p, batch, k)
      return {'dynamics_loss': loss}, metrics
    return _update(state, optimizer, loss_fn, decay)

  state = run_stage(config, logger, 'dynamics', state, step_fn,
                    _batch_fn(dataset, cfg.batch, cfg.length), cfg.steps)
  return dict(params, dynamics=state['params'])


FINETUNE_LOSSES = ('dynamics_loss', 'bc_loss', 'reward_loss', 'continue_loss')


def train_finetune(config, logger, models, dataset, params):
  """Phase 2: the dynamics loss continues beside the heads' MTP losses (Eq. 7 + Eq. 9)."""
  cfg, agent, decay = config.agent.dynamics, config.agent.agent, config.agent.agent.loss_ema
  optimizer = _optimizer(agent.finetune_lr)
  trained = {'dynamics': params['dynamics'], 'heads': params['heads']}
  state = _state(trained, optimizer, jax.random.PRNGKey(config.run.seed + 2), FINETUNE_LOSSES)
  forward = _dynamics_loss(models, params['tokenizer'], cfg.k_max)

  def step_fn(state, batch):
    def loss_fn(p, k):
      loss, h, metrics, alone = forward(p['dynamics'], batch, k)
      parts = world_model.agent_losses(models.heads, p['heads'], h, batch, agent.mtp, alone)
      parts['dynamics_loss'] = loss
      return parts, dict(metrics, **parts)
    return _update(state, optimizer, loss_fn, decay)

  state = run_stage(config, logger, 'finetune', state, step_fn,
                    _batch_fn(dataset, cfg.batch, cfg.length), agent.finetune_steps)
  return dict(params, **state['params'])


TRAINED_IN_IMAGINATION = ('policy', 'value')


def imagination_loss(models, heads_params, prior_params, rollout, agent):
  """PMPO (Eq. 11) and the value's two-hot NLL on lambda-returns (Eq. 10) of one rollout."""
  h = jax.lax.stop_gradient(rollout['h'])
  policy = models.heads.apply({'params': heads_params}, h[:, :-1], method=models.heads.policy)
  prior = models.heads.apply({'params': prior_params}, h[:, :-1], method=models.heads.policy)
  value_logits = models.heads.apply({'params': heads_params}, h, method=models.heads.value)
  value = jax.lax.stop_gradient(losses.TwoHot(value_logits).mean())
  cont = rollout['cont']
  ret = jax.lax.stop_gradient(
      losses.lambda_targets(rollout['reward'], cont, value, agent.discount, agent.lam))
  # States after a predicted end count less, as in DreamerV3 (weight: product of continues);
  # a rollout from a context that ended (a terminal last frame) counts not at all.
  weight = jax.lax.stop_gradient(rollout['start'][:, None] * jnp.cumprod(
      jnp.concatenate([jnp.ones_like(cont[:, :1]), cont[:, :-1]], 1), 1))
  log_prob = losses.policy_log_prob(policy[:, :, 0], rollout['action'])
  kl = losses.categorical_kl(policy[:, :, 0], jax.lax.stop_gradient(prior[:, :, 0]))
  pmpo, metrics = losses.pmpo_loss(log_prob, ret - value[:, :-1], kl, agent.alpha, agent.beta,
                                   weight)
  value_loss = losses.masked_mean(losses.twohot_nll(value_logits[:, :-1], ret), weight)
  metrics.update(pmpo_loss=pmpo, value_loss=value_loss, imagined_return=ret[:, 0].mean(),
                 imagined_reward=rollout['reward'].mean(), imagined_continue=cont.mean(),
                 policy_entropy=-(jax.nn.softmax(policy[:, :, 0]) *
                                  jax.nn.log_softmax(policy[:, :, 0])).sum(-1).mean())
  return {'pmpo_loss': pmpo, 'value_loss': value_loss}, metrics


def train_imagination(config, logger, models, dataset, params):
  """Phase 3: only the policy and value heads learn, from rollouts that start at dataset
  contexts (Sec. 3.3); pi_prior is a frozen copy of the phase-2 (BC) policy head."""
  agent, decay = config.agent.agent, config.agent.agent.loss_ema
  generator = models.generator()
  frozen_dynamics, prior = params['dynamics'], params['heads']
  # Only the policy and value heads receive updates; the reward and continue heads stay.
  labels = {name: ('train' if name in TRAINED_IN_IMAGINATION else 'frozen')
            for name in params['heads']}
  optimizer = optax.multi_transform(
      {'train': _optimizer(agent.imagine_lr), 'frozen': optax.set_to_zero()}, labels)
  state = _state(params['heads'], optimizer, jax.random.PRNGKey(config.run.seed + 3),
                 ['pmpo_loss', 'value_loss'])

  def step_fn(state, batch):
    key, rollout_key = jax.random.split(state['key'])
    z = world_model.encode(models.tokenizer, params['tokenizer'], batch['frames'],
                           batch['episode'], models.spatial)
    action, known = world_model.action_inputs(batch)
    rollout = generator.rollout(frozen_dynamics, state['params'], rollout_key,
                                z, action, known, batch['episode'], agent.horizon)
    rollout['start'] = 1.0 - batch['is_terminal'][:, -1].astype(jnp.float32)
    state = dict(state, key=key)
    return _update(state, optimizer, lambda p, k: imagination_loss(
        models, p, prior, rollout, agent), decay)

  state = run_stage(config, logger, 'imagine', state, step_fn,
                    _batch_fn(dataset, agent.batch, agent.context), agent.imagine_steps)
  return dict(params, heads=state['params'], prior=prior)

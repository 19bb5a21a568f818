"""The PlaNet agent as pure functions (`common.agent.Agent`).

PlaNet (Hafner et al., "Learning Latent Dynamics for Planning from Pixels",
ICML 2019) learns a recurrent state-space model from pixels and has no policy
network: at every environment step it infers the posterior latent state and
plans in latent space with the cross-entropy method (`common.planning.cem`).

World-model objective (Sec. 3, Eq. 3), per sequence of T steps:

  sum_t  E_q[ln p(o_t | s_t)] + 10 E_q[ln p(r_t | s_t)]
         - max(free, KL(q(s_t | s_{t-1}, a_{t-1}, o_t) || p(s_t | s_{t-1}, a_{t-1})))

(means over batch and time; unit-variance Gaussians for pixels and rewards;
reward weight 10 and free nats 3 from the reference code). Optional latent
overshooting (Sec. 4, Eq. 7) adds, for distances d = 2..D,
beta * KL(sg(q(s_t | o_<=t)) || p(s_t | s_{t-d}, a_{t-d:t-1})) averaged over
valid (t, d), with the same free nats.

Images are quantised to `image_bits` bits and dequantised with uniform noise
(App. A): x = floor(o / 2^(8 - bits)) / 2^bits + U(0, 2^-bits), in [0, 1];
the encoder sees x - 0.5 (common.nn.nets) and the decoder predicts x - 0.5.
"""
import dataclasses
from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from common import agent as agent_lib
from common.nn import distributions as dists
from common.nn import kl as kl_lib
from common.nn import nets
from common.nn import optim as optim_lib
from common.nn import rssm as rssm_lib
from common.planning import cem
from common.planning import geometry


@flax.struct.dataclass
class TrainState:
  params: dict          # {'encoder', 'rssm', 'decoder', 'reward'}
  opt_state: Any
  step: chex.Array      # update steps taken
  key: chex.Array       # PRNG key for the next update


# ---------------------------------------------------------------- helpers


def preprocess(image, bits: int, key=None):
  """uint8 [..., H, W, C] -> float32 in [0, 1], quantised to `bits` bits (PlaNet App. A).

  With a key, uniform dequantisation noise U(0, 2^-bits); without, the bin centre.
  """
  bins = 2.0 ** bits
  image = jnp.floor(image.astype(jnp.float32) / 2.0 ** (8 - bits)) / bins
  if key is None:
    return image + 0.5 / bins
  return image + jax.random.uniform(key, image.shape, jnp.float32, 0.0, 1.0 / bins)


def postprocess(mean, bits: int):
  """Decoder mean (x - 0.5 space) -> uint8 pixels on the quantised grid."""
  bins = 2.0 ** bits
  x = jnp.clip(mean + 0.5, 0.0, 1.0 - 1e-6)
  return (jnp.floor(x * bins) * (256.0 / bins)).astype(jnp.uint8)


def _dtype(precision: str) -> str:
  if precision == 'auto':
    return 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'
  return precision


def split_window(batch: dict) -> tuple:
  """(the T trained steps, prev_action [B, T, A]) of a replayed window of 1 + T steps.

  action[t] is chosen after step t, so step t's model input is action[t - 1]: the window's
  extra first step supplies the real previous action of the first trained step, which then
  starts from the zero state as the reference's chunks do (planet/tools/chunk_sequence.py;
  its actions are stored with the observation they led to). Zero where an episode starts.
  """
  rest = {key: value[:, 1:] for key, value in batch.items()}
  action = batch['action'].astype(jnp.float32)
  return rest, jnp.where(rest['is_first'].astype(bool)[..., None], 0.0, action[:, :-1])


def overshooting_kl(rssm, rssm_params, post, is_first, action, distance: int, key):
  """KL(sg(q(s_{t+d} | o_<=t+d)) || p(s_{t+d} | s_t, a_{t:t+d-1})) for d = 1..D (PlaNet, Eq. 7).

  Open-loop priors start from the posterior at every step t of the batch.
  post: RSSMState [B, T]; is_first bool [B, T]; action [B, T, A] (action[t] is
  taken after step t). Returns (kl [B, T, D], valid mask [B, T, D]): (t, d) is
  valid when t + d < T and no episode starts in (t, t + d].
  """
  batch, length = is_first.shape
  action_dim = action.shape[-1]
  starts = jax.tree.map(lambda x: x.reshape((batch * length,) + x.shape[2:]), post)
  index = jnp.arange(length)[:, None] + jnp.arange(1, distance + 1)[None]  # [T, D] target steps
  valid = index < length
  index = jnp.minimum(index, length - 1)
  windows = jnp.take(action, index - 1, axis=1).reshape((batch * length, distance, action_dim))
  states, _ = rssm_lib.imagine(rssm, rssm_params, starts, windows, distance, key)
  prior_stats = jax.tree.map(
      lambda x: x[:, 1:].reshape((batch, length, distance) + x.shape[2:]), states.stats)
  target = jax.tree.map(lambda x: jax.lax.stop_gradient(jnp.take(x, index, axis=1)), post.stats)
  resets = jnp.cumsum(jnp.take(is_first, index, axis=1).astype(jnp.int32), -1) > 0
  mask = valid[None] & ~resets
  return kl_lib.latent_kl(target, prior_stats), mask


# ---------------------------------------------------------------- agent


def make_agent(config, obs_space: dict, act_space) -> agent_lib.Agent:
  """Builds PlaNet's pure functions for the given spaces (see `_make`)."""
  return _make(config, obs_space, act_space)[0]


def make_diagnostics(config, obs_space: dict, act_space):
  """`diagnose(state, batch, key, context, samples) -> dict` of the model built by
  `make_agent` for the same config and spaces (experiments/diagnose_planet.py)."""
  return _make(config, obs_space, act_space)[1]


def _make(config, obs_space: dict, act_space):
  """(Agent, diagnose): PlaNet's pure functions for the given spaces.

  config: planet.configs.Config (uses `agent`, `run.precision`, `run.seed`).
  obs_space: dict with an uint8 'image' [H, W, C] Space (vector keys are ignored).
  act_space: a continuous Space [A] in [-1, 1].
  """
  cfg = config.agent
  if 'image' not in obs_space:
    raise ValueError(f'obs_space: PlaNet plans from pixels and needs an "image" key; got '
                     f'{sorted(obs_space)} (use env.pixels=True).')
  if getattr(act_space, 'discrete', False) or len(act_space.shape) != 1:
    raise ValueError(f'act_space: PlaNet plans continuous actions [A]; got {act_space} '
                     '(pick a continuous-control env, e.g. dmc_*).')
  image_shape = tuple(obs_space['image'].shape)
  action_dim = int(act_space.shape[0])
  dtype = _dtype(config.run.precision)
  rssm_config = dataclasses.replace(cfg.rssm, dtype=dtype)
  rssm = rssm_lib.RSSM(rssm_config, action_dim)
  encoder = nets.ImageEncoder(depth=cfg.encoder.depth, mults=tuple(cfg.encoder.mults),
                              kernel=cfg.encoder.kernel, padding='VALID', act=cfg.encoder.act,
                              norm='none', winit='glorot_uniform', dtype=dtype)
  decoder = nets.ImageDecoder(shape=image_shape, depth=cfg.decoder.depth,
                              mults=tuple(cfg.decoder.mults), padding='VALID',
                              act=cfg.decoder.act, norm='none', output='none',
                              winit='glorot_uniform', dtype=dtype)
  reward_head = nets.MLP(layers=cfg.reward_layers, units=cfg.reward_units, act=cfg.reward_act,
                         norm='none', out=1, winit='glorot_uniform', dtype=dtype)
  optimizer = optim_lib.make_optimizer(cfg.opt)
  planner = cfg.planner
  bits = cfg.image_bits

  def feat(params, state):
    return rssm.apply(params['rssm'], state, method=rssm_lib.RSSM.feat)

  def reward_mean(params, features):
    return reward_head.apply(params['reward'], features)[..., 0]

  # -- init ---------------------------------------------------------------

  def init(key) -> TrainState:
    enc_key, rssm_key, dec_key, rew_key, state_key = jax.random.split(key, 5)
    image = jnp.zeros((1,) + image_shape, jnp.float32)
    enc_params = encoder.init(enc_key, image)
    embed_dim = encoder.apply(enc_params, image).shape[-1]
    rssm_params = rssm_lib.init_params(rssm, rssm_key, embed_dim)
    feat_dim = rssm_config.deter + rssm_config.stoch * max(rssm_config.classes, 1)
    features = jnp.zeros((1, feat_dim), jnp.float32)
    params = {'encoder': enc_params, 'rssm': rssm_params,
              'decoder': decoder.init(dec_key, features),
              'reward': reward_head.init(rew_key, features)}
    return TrainState(params=params, opt_state=optimizer.init(params),
                      step=jnp.zeros((), jnp.int32), key=state_key)

  # -- world model ----------------------------------------------------------

  def overshooting_loss(params, post, key, is_first, action):
    kl, mask = overshooting_kl(rssm, params['rssm'], post, is_first, action, cfg.overshooting, key)
    mask = mask & (jnp.arange(cfg.overshooting) >= 1)  # d = 1 is the standard KL term
    count = jnp.maximum(mask.sum(), 1)
    mean_kl = (kl * mask).sum() / count
    if cfg.kl.free_avg:
      return jnp.maximum(mean_kl, cfg.kl.free), mean_kl
    return (jnp.maximum(kl, cfg.kl.free) * mask).sum() / count, mean_kl   # per term, as the reference

  def loss_fn(params, batch, key):
    image_key, obs_key, os_key = jax.random.split(key, 3)
    batch, prev_action = split_window(batch)
    image = preprocess(batch['image'], bits, image_key)
    is_first = batch['is_first'].astype(bool)
    action = batch['action'].astype(jnp.float32)
    embed = encoder.apply(params['encoder'], image)
    post, prior = rssm_lib.observe(rssm, params['rssm'], embed, prev_action, is_first, None,
                                   obs_key)
    features = feat(params, post)
    image_mean = decoder.apply(params['decoder'], features)
    image_loss = -dists.Normal(image_mean, jnp.ones_like(image_mean), dims=3).log_prob(
        image - 0.5).mean()
    predicted_reward = reward_mean(params, features)
    reward = batch['reward'].astype(jnp.float32)
    reward_loss = -dists.Normal(predicted_reward, jnp.ones_like(predicted_reward)).log_prob(
        reward).mean()
    kl_loss, kl_metrics = kl_lib.kl_loss(post.stats, prior.stats, cfg.kl)
    loss = cfg.image_scale * image_loss + cfg.reward_scale * reward_loss + kl_loss
    metrics = {'image_loss': image_loss, 'reward_loss': reward_loss, 'kl_loss': kl_loss,
               'reward_error': jnp.abs(predicted_reward - reward).mean(),
               **{f'{k}': v for k, v in kl_metrics.items()}}
    if cfg.overshooting > 1:
      os_loss, os_kl = overshooting_loss(params, post, os_key, is_first, action)
      loss = loss + cfg.overshooting_scale * os_loss
      metrics.update(overshooting_loss=os_loss, overshooting_kl=os_kl)
    metrics['loss'] = loss
    return loss, metrics

  def train(state: TrainState, batch: dict):
    chex.assert_rank(batch['image'], 5)
    chex.assert_shape(batch['action'], batch['image'].shape[:2] + (action_dim,))
    key, loss_key = jax.random.split(state.key)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, loss_key)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    # A non-finite loss or gradient skips the update (the train loop counts these).
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    params, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                     (params, opt_state), (state.params, state.opt_state))
    metrics.update(grad_norm=grad_norm, nonfinite=(~finite).astype(jnp.float32))
    state = state.replace(params=params, opt_state=opt_state, step=state.step + 1, key=key)
    return state, metrics

  # -- policy ---------------------------------------------------------------

  def init_policy_carry(num_envs: int):
    """(latent RSSMState [N], previous action [N, A]); reset by obs['is_first']."""
    c = rssm_config
    deter = jnp.zeros((num_envs, c.deter), jnp.float32)
    if c.classes:
      stoch = jnp.zeros((num_envs, c.stoch, c.classes), jnp.float32)
      stats = {'logits': jnp.zeros((num_envs, c.stoch, c.classes), jnp.float32)}
    else:
      stoch = jnp.zeros((num_envs, c.stoch), jnp.float32)
      stats = {'mean': stoch, 'std': jnp.ones_like(stoch)}
    return rssm_lib.RSSMState(deter, stoch, stats), jnp.zeros((num_envs, action_dim), jnp.float32)

  def make_rollout(params):
    """rollout_fn for `common.planning.cem`: latent [no batch], actions [C, H, A], key -> rewards [C, H]."""
    def rollout(latent, actions, key):
      start = jax.tree.map(lambda x: jnp.broadcast_to(x[None], (actions.shape[0],) + x.shape),
                           latent)
      states, _ = rssm_lib.imagine(rssm, params['rssm'], start, actions, None, key)
      next_states = jax.tree.map(lambda x: x[:, 1:], states)
      return reward_mean(params, feat(params, next_states))
    return rollout

  def policy(state: TrainState, carry, obs: dict, key, mode: str):
    if mode not in agent_lib.POLICY_MODES:
      raise ValueError(f'mode: {mode!r} is not one of {agent_lib.POLICY_MODES}.')
    latent, prev_action = carry
    num = obs['image'].shape[0]
    chex.assert_shape(obs['image'], (num,) + image_shape)
    image_key, obs_key, plan_key, noise_key = jax.random.split(key, 4)
    params = state.params
    embed = encoder.apply(params['encoder'], preprocess(obs['image'], bits, image_key))
    latent = rssm.apply(params['rssm'], latent, prev_action, embed,
                        obs['is_first'].astype(bool), obs_key, method=rssm_lib.RSSM.post_step)
    if mode == 'random':
      action = jax.random.uniform(noise_key, (num, action_dim), jnp.float32, -1.0, 1.0)
      return action, (latent, action)
    plans = cem.plan_batch(
        make_rollout(params), latent, plan_key,
        action_dim, horizon=planner.horizon, candidates=planner.candidates,
        top_k=planner.top_k, iterations=planner.iterations)
    action = plans[:, 0]
    if mode == 'train' and cfg.explore_noise > 0:
      action = action + cfg.explore_noise * jax.random.normal(noise_key, action.shape)
    action = jnp.clip(action, -1.0, 1.0)
    return action, (latent, action)

  # -- report ---------------------------------------------------------------

  def report(state: TrainState, batch: dict):
    """Open-loop prediction video: `report_context` observed frames, then the prior.

    video/openloop [T, 3 H, N W, C] uint8: truth, model, error (rows), N sequences; and
    geometry/* (common.planning.geometry.diagnostics) of the whole batch's posterior latents.
    """
    params = state.params
    obs_key, img_key = jax.random.split(jax.random.fold_in(state.key, 1))
    whole, whole_action = split_window(batch)
    whole_first = whole['is_first'].astype(bool)
    whole_post, _ = rssm_lib.observe(
        rssm, params['rssm'], encoder.apply(params['encoder'], preprocess(whole['image'], bits)),
        whole_action, whole_first, None, obs_key)
    geometry_metrics = geometry.diagnostics(
        {'deter': whole_post.deter, 'stoch': whole_post.stoch,
         'feat': feat(params, whole_post)}, whole_first)
    num = min(cfg.report_sequences, batch['image'].shape[0])
    batch, prev_action = split_window(jax.tree.map(lambda x: x[:num], batch))
    context = min(cfg.report_context, batch['image'].shape[1] - 1)
    image = preprocess(batch['image'], bits)
    is_first = batch['is_first'].astype(bool)
    embed = encoder.apply(params['encoder'], image)
    post, _ = rssm_lib.observe(rssm, params['rssm'], embed[:, :context],
                               prev_action[:, :context], is_first[:, :context], None, obs_key)
    last = jax.tree.map(lambda x: x[:, -1], post)
    states, _ = rssm_lib.imagine(rssm, params['rssm'], last, prev_action[:, context:], None,
                                 img_key)
    open_loop = jax.tree.map(lambda x: x[:, 1:], states)
    model = jnp.concatenate([decoder.apply(params['decoder'], feat(params, post)),
                             decoder.apply(params['decoder'], feat(params, open_loop))], 1)
    truth = image - 0.5
    error = (model - truth + 1.0) / 2.0 - 0.5
    rows = [postprocess(x, 8) for x in (truth, model, error)]
    video = jnp.concatenate(rows, 2)                              # [N, T, 3H, W, C]
    video = jnp.concatenate(list(video), 2)                       # [T, 3H, N W, C]
    predicted_reward = reward_mean(params, feat(params, open_loop))
    return {
        'openloop_image_mse': jnp.square(model[:, context:] - truth[:, context:]).mean(),
        'openloop_reward_error': jnp.abs(predicted_reward - batch['reward'][:, context:]).mean(),
        'video/openloop': video, **geometry_metrics,
    }

  # -- diagnostics -----------------------------------------------------------

  def diagnose(state: TrainState, batch: dict, key, context: int, samples: int):
    """Open-loop reward predictions over replayed windows of 1 + context + H steps.

    After observing `context` steps, the model imagines the window's remaining H steps
    with the real actions and with `samples` uniform random action sequences.
    Returns {'predicted', 'true'} [B] (summed over the H steps) and 'random' [B, samples].
    """
    params = state.params
    batch, prev_action = split_window(batch)
    horizon = batch['reward'].shape[1] - context
    obs_key, real_key, random_key, action_key = jax.random.split(key, 4)
    embed = encoder.apply(params['encoder'], preprocess(batch['image'], bits))
    post, _ = rssm_lib.observe(rssm, params['rssm'], embed[:, :context],
                               prev_action[:, :context], batch['is_first'][:, :context].astype(bool),
                               None, obs_key)
    start = jax.tree.map(lambda x: x[:, -1], post)
    states, _ = rssm_lib.imagine(rssm, params['rssm'], start, prev_action[:, context:], None,
                                 real_key)
    predicted = reward_mean(params, feat(params, states))[:, 1:].sum(1)
    num = batch['reward'].shape[0]
    actions = jax.random.uniform(action_key, (num * samples, horizon, action_dim), jnp.float32,
                                 -1.0, 1.0)
    tiled = jax.tree.map(lambda x: jnp.repeat(x, samples, 0), start)
    states, _ = rssm_lib.imagine(rssm, params['rssm'], tiled, actions, None, random_key)
    random = reward_mean(params, feat(params, states))[:, 1:].sum(1).reshape(num, samples)
    return {'predicted': predicted, 'true': batch['reward'][:, context:].sum(1),
            'random': random}

  # Windows of 1 + T steps: the first supplies the previous action (`split_window`).
  agent = agent_lib.Agent(init=init, init_policy_carry=init_policy_carry, policy=policy,
                          train=train, report=report, replay_context=1)
  return agent, diagnose

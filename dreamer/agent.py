"""The Dreamer agent as pure functions (`common.agent.Agent`): init, policy, train, report.

One train step (DreamerV3, Hafner et al. 2023, Sec. 2 and App. B), one XLA program:
  1. world-model loss on the replayed batch [B, T] (world_model.loss);
  2. from every posterior state (B * T starts), imagine `imag_horizon` steps with the
     actor through the (stop-gradient) world model;
  3. actor and critic losses on the imagined trajectories, and the critic's loss on
     the replayed trajectories bootstrapped from the imagined returns (actor_critic);
  4. one optimizer over all modules (V3 code), or one per module (V1/V2), then the
     slow critic's EMA step.
A step whose loss or gradients are not finite is skipped (state kept, only the RNG
advances) and reported as metrics['nonfinite'] = 1.
"""
import functools
from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from common import agent as agent_lib
from common.nn import optim as optim_lib
from common.nn import returns as returns_lib
from common.nn import rssm as rssm_lib
from common.planning import geometry
from dreamer import actor_critic as ac_lib
from dreamer import explore as explore_lib
from dreamer import planning as planning_lib
from dreamer import world_model as wm_lib

sg = jax.lax.stop_gradient


@flax.struct.dataclass
class TrainState:
  """Everything `train` updates; checkpointed as one pytree."""
  params: dict               # {'world_model': ..., 'actor': ..., 'critic': ...}
  opt_state: Any
  slow_critic: Any           # EMA copy of params['critic']
  retnorm: returns_lib.PercentileNormalizerState
  key: jax.Array
  step: jax.Array            # applied (finite) updates, int32


@flax.struct.dataclass
class ExploreTrainState(TrainState):
  """Plan2Explore's state (agent.explore.kind): a subclass, so that every other agent's
  checkpoints keep TrainState's layout (and older ones stay readable)."""
  explore: Any = None        # {'slow_critic', 'retnorm'} of the exploration critic


def compute_dtype(precision: str) -> str:
  """'auto' -> bfloat16 on GPU/TPU, float32 on CPU; otherwise the named dtype."""
  if precision == 'auto':
    return 'float32' if jax.default_backend() == 'cpu' else 'bfloat16'
  if precision not in ('float32', 'bfloat16'):
    raise ValueError(f"run.precision: use 'auto', 'float32' or 'bfloat16', got {precision!r}.")
  return precision


def _check_act_space(act_space):
  discrete = bool(getattr(act_space, 'discrete', False))
  if discrete:
    return
  shape = tuple(getattr(act_space, 'shape', ()))
  if len(shape) != 1:
    raise ValueError(f'act_space: the actor handles a discrete action or a continuous vector '
                     f'[A] in [-1, 1]; got shape {shape}.')


def make_optimizer(config) -> tuple:
  """(optimizer, per-module optimizers): one optimizer over all parameters (V3 code), or one
  per module (V1/V2) with its own state {'world_model', 'actor', 'critic'} (None for V3)."""
  if config.single_optimizer:
    if config.model_first:
      raise ValueError('agent.model_first needs one optimizer per module '
                       '(agent.single_optimizer=False).')
    return optim_lib.make_optimizer(config.opt), None
  modules = {'world_model': optim_lib.make_optimizer(config.opt),
             'actor': optim_lib.make_optimizer(config.actor_opt),
             'critic': optim_lib.make_optimizer(config.critic_opt)}

  def init_fn(params):
    return {name: modules[name].init(params[name]) for name in modules}

  def update_fn(grads, state, params=None):
    out = {name: modules[name].update(grads[name], state[name], params[name])
           for name in modules}
    return {n: u for n, (u, _) in out.items()}, {n: s for n, (_, s) in out.items()}

  return optax.GradientTransformation(init_fn, update_fn), modules


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return functools.reduce(jnp.logical_and, [jnp.all(jnp.isfinite(x)) for x in leaves],
                          jnp.bool_(True))


def imagine(wm: wm_lib.WorldModel, ac: ac_lib.ActorCritic, wm_params: dict, actor_params,
            start: rssm_lib.RSSMState, horizon: int, key: jax.Array) -> dict:
  """Imagined trajectory from start states [N] -> dict of [N, H+1, ...] (see actor_critic).

  With the actor gradient 'dynamics' or 'both' (V1; V2 continuous) the features, rewards
  and continue flags are differentiable functions of the actor's (reparameterised or
  straight-through) actions through the RSSM's transitions; with 'reinforce' (V2 discrete,
  V3) the trajectory is a constant and the actor learns from log-probabilities only.
  The actor reads stop-gradient features (V1 reference `dreamer.py` _imagine_ahead, V2
  `agent.py` imagine): an action's gradient reaches the later states it leads to, not the
  later actions through the policy's own input.
  The caller stops the gradient into `wm_params` (agent.train does).
  """
  dynamics = ac_lib.actor_grad(ac) != 'reinforce'
  actor_params = actor_params if dynamics else sg(actor_params)

  def policy_fn(latent, policy_key):
    feat = wm.rssm.apply(wm_params['rssm'], latent, method=rssm_lib.RSSM.feat)
    return ac_lib.actor_dist(ac, actor_params, sg(feat)).sample(policy_key)

  states, actions = rssm_lib.imagine(wm.rssm, wm_params['rssm'], start, policy_fn, horizon, key)
  feat = wm.rssm.apply(wm_params['rssm'], states, method=rssm_lib.RSSM.feat)
  if not dynamics:
    feat, actions = sg(feat), sg(actions)
  reward, cont = wm_lib.reward_continue(wm, wm_params, feat)
  return {'feat': feat, 'action': actions, 'reward': reward, 'cont': cont}


def imagination_starts(cfg, post: rssm_lib.RSSMState, is_terminal: jax.Array) -> tuple:
  """(start states [N], first continue flags [N] or None, the slice of time steps started from).

  Starts: the last `imag_starts` steps of each sequence (0: all), stop-gradient; V1 with a
  discount head drops each sequence's last step ("could be terminal", reference dreamer.py
  _imagine_ahead). V2 (`replay_start_continue`) takes the first imagined discount from the
  replayed step, 1 - is_terminal (times gamma where the head predicts discounted flags),
  instead of the head's prediction (reference agent.py imagine).
  """
  length = post.deter.shape[1]
  stop = length - 1 if cfg.imag_skip_last else length
  steps = slice(stop - min(cfg.imag_starts or stop, stop), stop)
  pick = lambda x: x[:, steps].reshape((-1,) + x.shape[2:])
  start = jax.tree.map(lambda x: sg(pick(x)), post)
  first = None
  if cfg.replay_start_continue and cfg.predict_continue:
    first = 1.0 - pick(jnp.asarray(is_terminal)).astype(jnp.float32)
    if cfg.continue_discount:  # the head's targets are discounted continue flags
      first = first * ac_lib.discount(cfg)
  return start, first, steps


def make_agent(config, obs_space: dict, act_space) -> agent_lib.Agent:
  """The DreamerV3 agent (or a V1/V2 preset of it) for these spaces.

  config: dreamer.configs.Config. obs_space: dict of `Space` (image [H, W, C] uint8
  and/or vectors); act_space: discrete (`.n`) or continuous [A].
  """
  _check_act_space(act_space)
  dtype = compute_dtype(config.run.precision)
  cfg = config.agent
  wm = wm_lib.make(cfg, obs_space, act_space, dtype)
  ac = ac_lib.make(cfg, act_space, dtype)
  optimizer, module_optimizers = make_optimizer(cfg)
  feat_size = wm_lib.feat_dim(wm)
  planning_lib.check(cfg, wm.discrete)
  xcfg = cfg.explore
  explore_lib.check(xcfg)
  exploring = xcfg.kind != 'none'
  if exploring:
    if not cfg.single_optimizer:
      raise ValueError('agent.explore: Plan2Explore trains with one optimizer over all modules '
                       '(agent.single_optimizer=True, the V3 default).')
    member = explore_lib.make_member(
        cfg.critic, explore_lib.target_dim(xcfg, wm.rssm.config, feat_size), dtype)
    member_inputs = feat_size + (wm.action_dim if xcfg.action_cond else 0)
  horizon = int(cfg.imag_horizon)
  if horizon < 1:
    raise ValueError(f'agent.imag_horizon: must be >= 1, got {horizon}.')

  def init(key: jax.Array) -> TrainState:
    wm_key, ac_key, state_key, expl_key = jax.random.split(key, 4)
    params = {'world_model': wm_lib.init_params(wm, wm_key),
              **ac_lib.init_params(ac, ac_key, feat_size)}
    extra = {}
    if exploring:
      ac_key, ensemble_key = jax.random.split(expl_key)
      expl = ac_lib.init_params(ac, ac_key, feat_size)   # same networks, own parameters
      params.update(expl_actor=expl['actor'], expl_critic=expl['critic'],
                    ensemble=explore_lib.init_ensemble(member, xcfg.models, ensemble_key,
                                                       member_inputs))
      extra['explore'] = {'slow_critic': jax.tree.map(jnp.array, expl['critic']),
                          'retnorm': returns_lib.percentile_normalizer_init()}
    return (ExploreTrainState if exploring else TrainState)(
        params=params, opt_state=optimizer.init(params),
        slow_critic=jax.tree.map(jnp.array, params['critic']),
        retnorm=returns_lib.percentile_normalizer_init(), key=state_key,
        step=jnp.zeros((), jnp.int32), **extra)

  def init_policy_carry(num_envs: int) -> dict:
    # Zeros are fine: the first observation has is_first set, which resets the
    # latent to the RSSM's initial state and the previous action to zeros.
    c = wm.rssm.config
    stoch = (num_envs, c.stoch, c.classes) if c.classes else (num_envs, c.stoch)
    stats = ({'logits': jnp.zeros(stoch, jnp.float32)} if c.classes else
             {'mean': jnp.zeros(stoch, jnp.float32), 'std': jnp.ones(stoch, jnp.float32)})
    latent = rssm_lib.RSSMState(jnp.zeros((num_envs, c.deter), jnp.float32),
                                jnp.zeros(stoch, jnp.float32), stats)
    carry = {'latent': latent, 'action': jnp.zeros((num_envs, wm.action_dim), jnp.float32)}
    if cfg.policy != 'actor':   # the last plans, the next step's warm start
      carry['plan'] = jnp.zeros((num_envs, cfg.planner.horizon, wm.action_dim), jnp.float32)
    return carry

  def policy(state: TrainState, carry: dict, obs: dict, key: jax.Array, mode: str = 'train'):
    """obs [N, ...] -> (action int32 [N] or float32 [N, A], carry)."""
    if mode not in agent_lib.POLICY_MODES:
      raise ValueError(f'mode: use one of {agent_lib.POLICY_MODES}, got {mode!r}.')
    params = state.params
    is_first = jnp.asarray(obs['is_first']).astype(bool)
    chex.assert_rank(is_first, 1)
    obs_key, act_key = jax.random.split(key)
    post = wm_lib.observe_step(wm, params['world_model'], carry['latent'], carry['action'], obs,
                               obs_key)
    if cfg.policy == 'actor':
      feat = wm.rssm.apply(params['world_model']['rssm'], post, method=rssm_lib.RSSM.feat)
      # Plan2Explore collects with its exploration actor; evaluation uses the task's.
      actor = params['expl_actor'] if exploring and mode == 'train' else params['actor']
      action = ac_lib.sample_action(ac, actor, feat, act_key, mode)
      carry = {'latent': post, 'action': action}
    else:   # the same plan in every mode: the planners are deterministic given their keys
      plans = planning_lib.plan_actions(wm, ac, cfg, params, post, carry['plan'], is_first,
                                        act_key)
      action = plans[:, 0]
      carry = {'latent': post, 'action': action, 'plan': plans}
    if wm.discrete:
      return jnp.argmax(action, -1).astype(jnp.int32), carry
    return action, carry

  def intrinsic_reward(ensemble_params, traj):
    """Plan2Explore's reward of an imagined trajectory: the ensemble's disagreement at each
    (state, action), plus the reward head's where `explore.extr_scale` is set."""
    inputs = explore_lib.inputs_of(xcfg, traj['feat'], traj['action'])
    reward = xcfg.intr_scale * explore_lib.disagreement(member, sg(ensemble_params), sg(inputs))
    if xcfg.extr_scale:
      reward = reward + xcfg.extr_scale * traj['reward']
    return reward

  def behaviour_loss(ac_params, wm_params, slow_critic, retnorm, post, feat, batch, key,
                     reward_fn=None):
    """Actor and critic losses from imagination started at the posterior states post [B, T].

    feat [B, T, F] are the posterior features the replay value loss (V3) reads; they carry
    gradients into the world model where `critic.replay_grad` is set. `reward_fn(traj)`
    replaces the reward head's rewards (Plan2Explore's exploration behaviour, which has no
    replay value loss: replayed rewards are not its rewards).
    """
    start, first_cont, steps = imagination_starts(cfg, post, batch['is_terminal'])
    # The actor's loss never trains the world model (V1-V3): its parameters are constants.
    traj = imagine(wm, ac, sg(wm_params), ac_params['actor'], start, horizon, key)
    if first_cont is not None:
      traj['cont'] = traj['cont'].at[:, 0].set(first_cont)
    if reward_fn is not None:
      traj['reward'] = reward_fn(traj)
    policy_loss, value_loss, retnorm, returns, metrics = ac_lib.imagination_loss(
        ac, ac_params, slow_critic, retnorm, traj)
    total = cfg.policy_scale * policy_loss + cfg.value_scale * value_loss
    if cfg.critic.replay_loss and reward_fn is None:
      boot = returns[:, 0].reshape(feat.shape[0], -1)
      tail = {k: batch[k][:, steps] for k in ('reward', 'is_last', 'is_terminal')}
      tail['reward'] = wm_lib.transform_reward(cfg, tail['reward'].astype(jnp.float32))
      repval, repval_metrics = ac_lib.replay_value_loss(
          ac, ac_params['critic'], slow_critic, feat[:, steps], tail, boot)
      total = total + cfg.repval_scale * repval
      metrics.update(repval_metrics)
      metrics['repval_loss'] = sg(repval)
    metrics.update(policy_loss=sg(policy_loss), value_loss=sg(value_loss))
    return total, (retnorm, metrics)

  def loss_fn(params, slow_critic, retnorm, explore_state, batch, key):
    """The joint loss of one update (V1, V3): every module's gradient at the same parameters."""
    wm_key, img_key = jax.random.split(key)
    model_loss, (post, feat, batch, metrics) = wm_lib.loss(
        wm, params['world_model'], batch, wm_key)
    ac_params = {'actor': params['actor'], 'critic': params['critic']}
    behaviour, (retnorm, ac_metrics) = behaviour_loss(
        ac_params, params['world_model'], slow_critic, retnorm, post, feat, batch, img_key)
    metrics.update(ac_metrics)
    total = model_loss + behaviour
    if exploring:
      explore_loss, explore, explore_metrics = exploration_loss(
          params, explore_state, post, feat, batch, jax.random.fold_in(img_key, 1))
      total = total + explore_loss
      metrics.update(explore_metrics)
    else:
      explore = explore_state
    metrics['loss'] = sg(total)
    return total, (retnorm, explore, sg(post), metrics)

  def exploration_loss(params, explore_state, post, feat, batch, key):
    """Plan2Explore: the ensemble's one-step prediction loss, and the exploration actor and
    critic trained in imagination on its disagreement."""
    action = wm_lib.action_to_float(wm, batch['action'])
    targets = {'stoch': wm_lib.stoch_vector(wm, post), 'deter': post.deter,
               'feat': feat}[xcfg.target]
    ensemble = explore_lib.ensemble_loss(
        member, params['ensemble'], explore_lib.inputs_of(xcfg, sg(feat), action), targets,
        jnp.asarray(batch['is_first']).astype(bool), xcfg.offset)
    expl_params = {'actor': params['expl_actor'], 'critic': params['expl_critic']}
    behaviour, (retnorm, ac_metrics) = behaviour_loss(
        expl_params, params['world_model'], explore_state['slow_critic'],
        explore_state['retnorm'], sg(post), sg(feat), batch, key,
        reward_fn=lambda traj: intrinsic_reward(params['ensemble'], traj))
    metrics = {f'expl_{k}': v for k, v in ac_metrics.items()}
    metrics['ensemble_loss'] = sg(ensemble)
    return ensemble + behaviour, dict(explore_state, retnorm=retnorm), metrics

  def model_first_grads(state, batch, key):
    """V2 (reference agent.py train): the world model's update first, then the actor and
    critic losses imagined with the updated world model from the pre-update posteriors.
    Returns (total, retnorm, post, metrics, grads, updates, opt_state)."""
    wm_key, img_key = jax.random.split(key)
    params, opt_state = state.params, state.opt_state
    (model_loss, (post, feat, batch, metrics)), wm_grads = jax.value_and_grad(
        lambda p: wm_lib.loss(wm, p, batch, wm_key), has_aux=True)(params['world_model'])
    wm_updates, wm_opt = module_optimizers['world_model'].update(
        wm_grads, opt_state['world_model'], params['world_model'])
    new_wm = optax.apply_updates(params['world_model'], wm_updates)
    ac_params = {'actor': params['actor'], 'critic': params['critic']}
    (behaviour, (retnorm, ac_metrics)), ac_grads = jax.value_and_grad(
        behaviour_loss, has_aux=True)(ac_params, new_wm, state.slow_critic, state.retnorm,
                                      sg(post), sg(feat), batch, img_key)
    metrics.update(ac_metrics)
    grads, updates, new_opt = {'world_model': wm_grads}, {'world_model': wm_updates}, {
        'world_model': wm_opt}
    for name in ac_params:
      updates[name], new_opt[name] = module_optimizers[name].update(
          ac_grads[name], opt_state[name], params[name])
      grads[name] = ac_grads[name]
    total = model_loss + behaviour
    metrics['loss'] = sg(total)
    return total, retnorm, sg(post), metrics, grads, updates, new_opt

  def train(state: TrainState, batch: dict):
    """One update on a replayed batch [B, K + T, ...] -> (state, metrics).

    Metrics are scalars, plus with a replay context `metrics['replay']`: the posterior
    latents of the T trained steps as replay entries [B, T, ...] (`agent_lib.Agent`).
    """
    _check_batch(batch)
    key, step_key = jax.random.split(state.key)
    if cfg.model_first:
      total, retnorm, post, metrics, grads, updates, opt_state = model_first_grads(
          state, batch, step_key)
      explore = None   # Plan2Explore needs the single optimizer
    else:
      grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
      (total, (retnorm, explore, post, metrics)), grads = grad_fn(
          state.params, state.slow_critic, state.retnorm,
          state.explore if exploring else None, batch, step_key)
      with jax.named_scope('optimizer'):   # a name in experiments.profile_vs_reference
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    slow = returns_lib.slow_target_update(
        state.slow_critic, params['critic'], state.step, cfg.critic.slow_rate,
        cfg.critic.slow_every)
    extra = {}
    if exploring:
      extra['explore'] = dict(explore, slow_critic=returns_lib.slow_target_update(
          explore['slow_critic'], params['expl_critic'], state.step, cfg.critic.slow_rate,
          cfg.critic.slow_every))
    finite = jnp.isfinite(total) & _all_finite(grads)
    new = state.replace(params=params, opt_state=opt_state, slow_critic=slow, retnorm=retnorm,
                        key=key, step=state.step + 1, **extra)
    old = state.replace(key=key)
    state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    for name, tree in grads.items():
      metrics[f'grad_norm_{name}'] = optax.global_norm(tree)
    metrics['nonfinite'] = (~finite).astype(jnp.float32)
    if cfg.replay_context:
      metrics['replay'] = wm_lib.context_entries(wm, post)
    return state, metrics

  def latent_geometry(wm_params: dict, batch: dict, key: jax.Array) -> dict:
    """common.planning.geometry's diagnostics of the posterior latents of a replayed batch."""
    post, _, feat, _, rest = wm_lib.observe(wm, wm_params, batch, key)
    stoch = wm_lib.stoch_vector(wm, post)
    return geometry.diagnostics({'deter': post.deter, 'stoch': stoch, 'feat': feat},
                                rest['is_first'])

  def report(state: TrainState, batch: dict) -> dict:
    """Open-loop prediction: `report_context` observed frames, then imagined ones (V3 report),
    and the latent geometry (`geometry/*`: common.planning.geometry.diagnostics) of the whole batch.

    metrics['video/openloop'] is uint8 [T, S * H, 3 * W, C]: for each of S sequences a
    row of truth | model | error ((model - truth + 1) / 2).
    """
    _check_batch(batch)
    params = state.params['world_model']
    obs_key, img_key = jax.random.split(jax.random.fold_in(state.key, 1))
    metrics = latent_geometry(params, batch, obs_key)
    num = min(cfg.report_sequences, batch['is_first'].shape[0])
    batch = jax.tree.map(lambda x: x[:num], batch)
    length = batch['is_first'].shape[1] - cfg.replay_context
    context = min(cfg.report_context, length - 1)
    post, _, feat, _, _ = wm_lib.observe(
        wm, params, jax.tree.map(lambda x: x[:, :cfg.replay_context + context], batch), obs_key)
    batch = jax.tree.map(lambda x: x[:, cfg.replay_context:], batch)
    action = wm_lib.action_to_float(wm, batch['action'])
    start = jax.tree.map(lambda x: x[:, -1], post)
    # The state at step t follows action[t - 1]; steps context..T-1 are imagined.
    states, _ = rssm_lib.imagine(wm.rssm, params['rssm'], start, action[:, context - 1:-1],
                                 None, img_key)
    img_feat = wm.rssm.apply(params['rssm'], states, method=rssm_lib.RSSM.feat)[:, 1:]
    model_feat = jnp.concatenate([feat, img_feat], 1)
    reward, _ = wm_lib.reward_continue(wm, params, img_feat)
    metrics['openloop_reward_error'] = jnp.abs(
        reward - batch['reward'][:, context:].astype(jnp.float32)).mean()
    if wm.image_shapes:
      key_ = wm.image_shapes[0][0]
      model = wm_lib.decode_images(wm, params, model_feat)[key_]
      truth = batch[key_].astype(jnp.float32) / 255.0
      error = (model - truth + 1.0) / 2.0
      metrics['openloop_image_mse'] = jnp.square(model - truth)[:, context:].mean()
      video = jnp.concatenate([truth, model, error], 3)          # [S, T, H, 3W, C]
      video = jnp.transpose(video, (1, 0, 2, 3, 4))              # [T, S, H, 3W, C]
      video = video.reshape((length, -1) + video.shape[3:])      # [T, S*H, 3W, C]
      metrics['video/openloop'] = jnp.clip(video * 255.0, 0, 255).astype(jnp.uint8)
    return metrics

  def policy_entries(carry: dict) -> dict:
    return wm_lib.context_entries(wm, carry['latent'])

  return agent_lib.Agent(init=init, init_policy_carry=init_policy_carry, policy=policy,
                         train=train, report=report, replay_context=int(cfg.replay_context),
                         policy_entries=policy_entries if cfg.replay_context else None)


def _check_batch(batch: dict):
  for key in ('action', 'reward', 'is_first', 'is_last', 'is_terminal'):
    if key not in batch:
      raise ValueError(f'batch: missing {key!r}; replay batches need {key!r} [B, T].')
  chex.assert_rank(batch['is_first'], 2)

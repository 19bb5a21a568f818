"""Actor-critic learning in imagination (DreamerV1 Sec. 3, V2 Sec. 2.2, V3 Sec. 2 "Critic/Actor learning").

One implementation whose behaviour the config selects:

  | switch                        | V1                  | V2                    | V3                         |
  |-------------------------------|---------------------|-----------------------|----------------------------|
  | actor gradient (discrete)     | -                   | REINFORCE             | REINFORCE                  |
  | actor gradient (continuous)   | dynamics backprop   | dynamics backprop     | REINFORCE                  |
  | ('both': grad_mix dynamics + (1 - grad_mix) REINFORCE, V2's actor_grad_mix)                            |
  | return normaliser             | none                | none                  | 5-95 percentile EMA        |
  | critic output / loss          | regression (MSE)    | regression (MSE)      | symexp two-hot             |
  | slow critic                   | none                | bootstrap target      | regulariser (EMA 0.02)     |
  | value loss on replay          | no                  | no                    | yes (scale 0.3)            |

Imagined trajectories are batch-major: `feat [N, H+1, F]`, `action [N, H+1, A]`
(action[t] is chosen at state t), `reward [N, H+1]` (reward[t] predicted for arriving
at state t), `cont [N, H+1]` (continue probability of state t). The lambda-return
R[t] = r[t+1] + gamma c[t+1] ((1 - lam) v[t+1] + lam R[t+1]) (V3, Eq. 7) covers t < H.
"""
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

from common.nn import distributions as dists
from common.nn import returns as returns_lib
from dreamer import networks

sg = jax.lax.stop_gradient
ACTOR_GRADS = ('reinforce', 'dynamics', 'both')
CONTINUOUS_DISTS = ('bounded_normal', 'trunc_normal', 'tanh_normal', 'normal')


class ActorCritic(NamedTuple):
  """The actor and critic modules plus what the losses need to know about them."""
  actor: networks.Head
  critic: networks.Head
  config: object          # DreamerConfig
  discrete: bool
  action_dim: int


def make(config, act_space, dtype=jnp.float32) -> ActorCritic:
  """Builds the actor and critic for an action space (discrete `.n` or continuous `[A]`)."""
  discrete = bool(getattr(act_space, 'discrete', False))
  if discrete:
    action_dim = int(act_space.n)
  else:
    if len(act_space.shape) != 1:
      raise ValueError(f'act_space: continuous actions must be a vector [A], got shape '
                       f'{act_space.shape}; flatten the action space.')
    action_dim = int(act_space.shape[0])
  if action_dim < 1:
    raise ValueError(f'act_space: needs at least one action, got {action_dim}.')
  actor_cfg, critic_cfg = config.actor, config.critic
  if actor_cfg.continuous_dist not in CONTINUOUS_DISTS:
    raise ValueError(f'agent.actor.continuous_dist: unknown {actor_cfg.continuous_dist!r}; '
                     f'use one of {CONTINUOUS_DISTS}.')
  for name in ('grad_discrete', 'grad_continuous'):
    if getattr(actor_cfg, name) not in ACTOR_GRADS:
      raise ValueError(f'agent.actor.{name}: use one of {ACTOR_GRADS}, '
                       f'got {getattr(actor_cfg, name)!r}.')
  if not 0.0 <= actor_cfg.grad_mix <= 1.0:
    raise ValueError(f'agent.actor.grad_mix: must be in [0, 1], got {actor_cfg.grad_mix}.')
  out = action_dim if discrete else 2 * action_dim
  actor = networks.Head(
      out_dim=out, layers=actor_cfg.layers, units=actor_cfg.units, act=actor_cfg.act,
      norm=actor_cfg.norm, outscale=actor_cfg.outscale, winit=actor_cfg.winit,
      norm_eps=actor_cfg.norm_eps, dtype=dtype)
  critic = networks.make_head(critic_cfg, dtype)
  return ActorCritic(actor, critic, config, discrete, action_dim)


def init_params(ac: ActorCritic, key: chex.PRNGKey, feat_dim: int) -> dict:
  """{'actor': ..., 'critic': ...} parameter pytrees."""
  actor_key, critic_key = jax.random.split(key)
  feat = jnp.zeros((1, feat_dim), jnp.float32)
  return {'actor': ac.actor.init(actor_key, feat)['params'],
          'critic': ac.critic.init(critic_key, feat)['params']}


def actor_dist(ac: ActorCritic, actor_params, feat: chex.Array):
  """The policy distribution over actions (one-hot [.., A] or continuous [..., A]) at `feat` [..., F]."""
  out = ac.actor.apply({'params': actor_params}, feat)
  cfg = ac.config.actor
  if ac.discrete:
    return dists.OneHotCategorical(out, unimix=cfg.unimix)
  mean, raw_std = jnp.split(out, 2, -1)
  if cfg.continuous_dist == 'bounded_normal':
    return dists.bounded_normal(mean, raw_std, cfg.min_std, cfg.max_std)
  if cfg.continuous_dist == 'tanh_normal':
    # DreamerV1 (reference code): mean = 5 tanh(m / 5) keeps the pre-tanh mean in range;
    # std = softplus(raw + softplus^-1(init_std)) + min_std starts at about init_std.
    raw_init = jnp.log(jnp.expm1(jnp.float32(cfg.init_std)))
    std = jax.nn.softplus(raw_std + raw_init) + cfg.min_std
    return dists.TanhNormal(5.0 * jnp.tanh(mean / 5.0), std)
  if cfg.continuous_dist == 'trunc_normal':
    # DreamerV2 (reference code): std = 2 sigmoid((raw + init_std) / 2) + min_std, in
    # [min_std, 2 + min_std]; the mean tanh(m) lies inside the [-1, 1] truncation.
    std = 2.0 * jax.nn.sigmoid((raw_std + cfg.init_std) / 2.0) + cfg.min_std
    return dists.TruncNormal(jnp.tanh(mean), std)
  std = (cfg.max_std - cfg.min_std) * jax.nn.sigmoid(raw_std + 2.0) + cfg.min_std
  return dists.Normal(mean, std, dims=1)


def critic_value(ac: ActorCritic, critic_params, feat: chex.Array):
  """(distribution, value [...]) of the critic at `feat` [..., F]."""
  dist = networks.head_dist(ac.config.critic, ac.critic.apply({'params': critic_params}, feat))
  return dist, networks.head_mean(ac.config.critic, dist)


def actor_grad(ac: ActorCritic) -> str:
  cfg = ac.config.actor
  return cfg.grad_discrete if ac.discrete else cfg.grad_continuous


def discount(config) -> float:
  return 1.0 - 1.0 / config.horizon


TARGETS = ('v3', 'v2', 'v1')


class _Targets(NamedTuple):
  """Which imagined states each loss trains and towards what, as one version's code indexes.

  critic: slice of states [N, H+1] the critic trains on, towards `critic_target` with
  `critic_weight`; actor: slice of states (and of their actions) the actor trains on, with
  `actor_return`, `baseline` and `actor_weight`. `returns` [N, H] are V3's R_t (for the
  replay value loss and the return normaliser).
  """
  critic: slice
  critic_target: chex.Array
  critic_weight: chex.Array
  actor: slice
  actor_return: chex.Array
  baseline: chex.Array
  actor_weight: chex.Array


def imagination_targets(kind: str, reward, disc, value, lam, first_weight,
                        unroll: int = 1) -> _Targets:
  """Returns, baselines and weights over an imagined trajectory of H + 1 states s_0..s_H.

  reward[t] = r(s_t), disc[t] = gamma c(s_t) (the discount of arriving at s_t), value [N, H+1]
  the bootstrap critic. Each version follows its reference code (weights are stop-gradient):
    'v3' (V3 Eq. 7, dreamerv3 agent.py imag_loss): R_t = r_{t+1} + disc_{t+1}((1 - lam)
      v_{t+1} + lam R_{t+1}), R_H = v_H; w_t = prod_{j<=t} disc_j / `first_weight`; critic and
      actor on s_0..s_{H-1}, baseline v_t.
    'v2' (dreamerv2 agent.py target/actor_loss/critic_loss): T_t = r_t + disc_t((1 - lam)
      v_{t+1} + lam T_{t+1}), T_H = v_H, so a value includes its own state's reward;
      w_t = prod_{j<t} disc_j; critic on s_0..s_{H-1} towards T_t; actor on s_0..s_{H-2}
      with T_{t+1} and baseline v_t.
    'v1' (dreamer dreamer.py _train): the trajectory without its start, s_1..s_H:
      R_k = r_k + disc_k((1 - lam) v_{k+1} + lam R_{k+1}), R_H = v_H; d_k = prod_{1<=j<k}
      disc_j; critic and actor on s_1..s_{H-1}.
  """
  horizon = reward.shape[1] - 1
  ones = jnp.ones_like(disc[:, :1])
  if kind == 'v3':
    returns = returns_lib.lambda_return(reward[:, 1:].T, value.T, disc[:, 1:].T, lam, unroll).T
    weight = sg(jnp.cumprod(disc, 1) / first_weight)[:, :-1]
    states = slice(0, horizon)
    return _Targets(states, returns, weight, states, returns, value[:, :-1], weight)
  if kind == 'v2':
    returns = returns_lib.lambda_return(reward[:, :-1].T, value.T, disc[:, :-1].T, lam, unroll).T
    weight = sg(jnp.cumprod(jnp.concatenate([ones, disc[:, :-2]], 1), 1))   # [N, H]
    return _Targets(slice(0, horizon), returns, weight, slice(0, horizon - 1), returns[:, 1:],
                    value[:, :-2], weight[:, :-1])
  if kind == 'v1':
    returns = returns_lib.lambda_return(reward[:, 1:-1].T, value[:, 1:].T, disc[:, 1:-1].T,
                                        lam, unroll).T                       # [N, H - 1]
    weight = sg(jnp.cumprod(jnp.concatenate([ones, disc[:, 1:-2]], 1), 1))   # [N, H - 1]
    states = slice(1, horizon)
    return _Targets(states, returns, weight, states, returns, value[:, 1:-1], weight)
  raise ValueError(f'agent.imag_targets: use one of {TARGETS}, got {kind!r}.')


def imagination_loss(ac: ActorCritic, params: dict, slow_critic_params, retnorm_state,
                     traj: dict) -> tuple:
  """Actor and critic losses on imagined trajectories (V3, Eq. 6-8; V1, Eq. 7-8; V2, Eq. 5-6).

  Args:
    params: {'actor', 'critic'} (online). slow_critic_params: the slow critic.
    retnorm_state: PercentileNormalizerState (updated here when retnorm is 'percentile').
    traj: {'feat' [N, H+1, F], 'action' [N, H+1, A], 'reward' [N, H+1], 'cont' [N, H+1]}.
      In REINFORCE mode the leaves carry no gradient; in dynamics mode `feat`, `reward`
      and `cont` are differentiable functions of the actor's actions.
  Returns:
    (policy_loss [], value_loss [], new retnorm_state, returns [N, H'], metrics); the returns
    are the actor's (V3: R_t from every state s_0..s_{H-1}).
  """
  cfg = ac.config
  feat, action, reward, cont = traj['feat'], traj['action'], traj['reward'], traj['cont']
  chex.assert_rank([feat, action, reward, cont], [3, 3, 2, 2])
  chex.assert_equal_shape_prefix([feat, action, reward, cont], 2)
  gamma = 1.0 if cfg.continue_discount else discount(cfg)

  grad_mode = actor_grad(ac)
  # Bootstrap values from the slow critic (V2) or the online one (V1, V3), never
  # training it here. With dynamics gradients (V1, V2 continuous) the return's
  # gradient flows through the critic into the imagined states.
  boot_params = slow_critic_params if cfg.critic.slow_target else params['critic']
  _, boot = critic_value(ac, sg(boot_params), feat if grad_mode != 'reinforce' else sg(feat))
  targets = imagination_targets(cfg.imag_targets, reward, gamma * cont, boot, cfg.lam, gamma,
                                cfg.rssm.unroll)
  returns = targets.actor_return

  if cfg.retnorm.kind == 'percentile':
    retnorm_state = returns_lib.percentile_normalizer_update(
        retnorm_state, returns, cfg.retnorm.rate, cfg.retnorm.low, cfg.retnorm.high)
    _, scale = returns_lib.percentile_normalizer_stats(retnorm_state, cfg.retnorm.limit)
  elif cfg.retnorm.kind == 'none':
    scale = jnp.ones((), jnp.float32)
  else:
    raise ValueError(f"agent.retnorm.kind: use 'percentile' or 'none', got {cfg.retnorm.kind!r}.")
  scale = sg(scale)

  states = targets.actor
  policy = actor_dist(ac, params['actor'], sg(feat[:, states]))
  entropy = policy.entropy()
  # REINFORCE (V2 Eq. 6, V3 Eq. 6): log pi(a_t | s_t) sg(R_t - v(s_t)) / S;
  # dynamics backprop (V1 Eq. 7): R_t / S differentiated through the model.
  if grad_mode == 'dynamics':
    objective = returns / scale
  else:
    advantage = sg((returns - targets.baseline) / scale)
    # 'both' (V2 agent.py actor_loss): the log-prob of the action as sampled, so its
    # straight-through or reparameterised gradient stays in the REINFORCE term too.
    taken = action[:, states] if grad_mode == 'both' else sg(action[:, states])
    objective = policy.log_prob(taken) * advantage
    if grad_mode == 'both':
      mix = cfg.actor.grad_mix
      objective = mix * returns / scale + (1.0 - mix) * objective
  policy_loss = (targets.actor_weight * -(objective + cfg.actor.entropy * entropy)).mean()

  critic_feat = sg(feat[:, targets.critic])
  critic_dist, value = critic_value(ac, params['critic'], critic_feat)
  _, slow_value = critic_value(ac, slow_critic_params, critic_feat)
  value_nll = -_log_prob(cfg.critic, critic_dist, sg(targets.critic_target))
  reg = -_log_prob(cfg.critic, critic_dist, sg(slow_value))
  value_loss = (targets.critic_weight * (value_nll + cfg.critic.slow_regularizer * reg)).mean()

  metrics = {
      'imag_return_mean': returns.mean(), 'imag_return_std': returns.std(),
      'imag_value_mean': value.mean(), 'imag_reward_mean': reward.mean(),
      'imag_cont_mean': cont.mean(), 'imag_weight_mean': targets.critic_weight.mean(),
      'policy_entropy': entropy.mean(), 'return_scale': scale,
      'retnorm_low': retnorm_state.low, 'retnorm_high': retnorm_state.high,
  }
  if ac.discrete:
    metrics['policy_max_prob'] = policy.probs.max(-1).mean()
  return policy_loss, value_loss, retnorm_state, returns, sg(metrics)


def _log_prob(head_cfg, dist, target):
  return networks.head_log_prob(head_cfg, dist, target)


def _pad(x):
  """[N, T-1] -> [N, T] with a zero last step (its loss is sliced off)."""
  return jnp.concatenate([x, jnp.zeros_like(x[:, -1:])], 1)


def replay_value_loss(ac: ActorCritic, critic_params, slow_critic_params, feat: chex.Array,
                      batch: dict, boot: chex.Array) -> tuple:
  """V3's critic loss on replayed trajectories, bootstrapped from imagined returns (V3 code 'repval').

    R[t] = r[t+1] + gamma (1 - term[t+1]) ((1 - lam') boot[t+1] + lam' R[t+1]),
    lam' = lam (1 - last[t+1]), R[T-1] := boot[T-1]-bootstrap;  weight (1 - last[t]).

  Args:
    feat: posterior features [B, T, F] (carry gradients into the world model when
      critic.replay_grad is set). batch: 'reward', 'is_last', 'is_terminal' [B, T].
    boot: imagined lambda-return from each posterior state [B, T].
  Returns:
    (loss [], metrics).
  """
  cfg = ac.config
  chex.assert_rank([feat, boot], [3, 2])
  chex.assert_equal_shape_prefix([feat, boot, batch['reward']], 2)
  reward = batch['reward'].astype(jnp.float32)
  last = batch['is_last'].astype(jnp.float32)
  term = batch['is_terminal'].astype(jnp.float32)
  gamma = discount(cfg)
  returns = returns_lib.lambda_return(
      reward[:, 1:].T, sg(boot).T, (gamma * (1 - term[:, 1:])).T,
      (cfg.lam * (1 - last[:, 1:])).T, cfg.rssm.unroll).T    # [B, T-1]
  if not cfg.critic.replay_grad:
    feat = sg(feat)
  dist, _ = critic_value(ac, critic_params, feat)
  _, slow_value = critic_value(ac, slow_critic_params, sg(feat))
  nll = -_log_prob(cfg.critic, dist, sg(_pad(returns)))[:, :-1]
  reg = -_log_prob(cfg.critic, dist, sg(slow_value))[:, :-1]
  weight = 1.0 - last[:, :-1]
  loss = (weight * (nll + cfg.critic.slow_regularizer * reg)).mean()
  return loss, {'replay_return_mean': sg(returns.mean())}


def sample_action(ac: ActorCritic, actor_params, feat: chex.Array, key: chex.PRNGKey,
                  mode: str) -> chex.Array:
  """An action (one-hot float [N, A] or continuous [N, A]) for `feat` [N, F].

  mode: 'train' samples (plus V1's exploration: Gaussian noise or epsilon-greedy),
  'eval' samples (`actor.eval_sample`, the V3 reference's policy in every mode) or takes
  the mode (V1/V2 reference), 'random' samples uniformly from the action space.
  """
  n = feat.shape[0]
  if mode == 'random':
    if ac.discrete:
      index = jax.random.randint(key, (n,), 0, ac.action_dim)
      return jax.nn.one_hot(index, ac.action_dim, dtype=jnp.float32)
    return jax.random.uniform(key, (n, ac.action_dim), jnp.float32, -1.0, 1.0)
  dist = actor_dist(ac, actor_params, feat)
  if mode == 'eval' and ac.config.actor.eval_sample:
    action = dist.sample(key)
  elif mode == 'eval' and isinstance(dist, dists.TanhNormal):
    action = dist.sample_mode(key)   # V1 reference: the most likely of 100 samples
  elif mode == 'eval':
    action = dist.mode()
  elif mode == 'train':
    sample_key, noise_key = jax.random.split(key)
    action = dist.sample(sample_key)
    noise = ac.config.actor.explore_noise
    if noise and ac.discrete:  # V1: epsilon-greedy, a uniform action with probability noise
      coin_key, index_key = jax.random.split(noise_key)
      uniform = jax.nn.one_hot(jax.random.randint(index_key, (n,), 0, ac.action_dim),
                               ac.action_dim, dtype=action.dtype)
      action = jnp.where(jax.random.uniform(coin_key, (n, 1)) < noise, uniform, action)
    elif noise:  # V1: additive Gaussian noise
      action = action + noise * jax.random.normal(noise_key, action.shape)
  else:
    raise ValueError(f"policy mode: use 'train', 'eval' or 'random', got {mode!r}.")
  if not ac.discrete:
    action = jnp.clip(action, -1.0, 1.0)
  return sg(action.astype(jnp.float32))


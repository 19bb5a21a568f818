"""Recurrent State-Space Model (PlaNet, Hafner et al. 2019, Sec. 3, Eq. 4).

  deterministic state   h_t = f(h_{t-1}, z_{t-1}, a_{t-1})        (GRU / block GRU)
  prior                 z_t ~ p(z_t | h_t)                       (`img_step`)
  posterior             z_t ~ q(z_t | h_t, e_t)                  (`post_step`; `obs_step` both)
  features              [h_t, z_t]                               (`feat`)

One module covers
  * PlaNet / DreamerV1: Gaussian z (classes=0), std = softplus(.) + min_std,
    ReLU (PlaNet) / ELU (V1), no norm, zero initial state; V1's cell is Keras'
    GRUCell (`core='keras_gru'`), PlaNet's TensorFlow's GRUBlockCell (`core='classic_gru'`:
    the reset gate acts on h before its matmul, gate biases start at 1).
  * DreamerV2 (Sec. 2): 32 categoricals of 32 classes with straight-through
    one-hot samples, layer-normed GRU (update bias -1, Keras epsilon 1e-3).
  * DreamerV3 (App. B): categoricals mixed with 1% uniform (unimix), block GRU
    with separate input layers for h, z and a, RMSNorm, SiLU. Its reference code
    starts from zeros (`rssm.py` initial); the paper's learned initial state
    h_0 = tanh(w), z_0 = mode of p(z | h_0) is `initial='learned'`.

The module is used only through `apply(params, ..., method=...)`; the pure
functions `init_params`, `observe` and `imagine` scan over time with
`jax.lax.scan` (batch-major in and out). They never jit themselves.

Stats: Gaussian {'mean': [B, S], 'std': [B, S]}; categorical
{'logits': [B, S, C]} holding the log of the unimix-ed probabilities, so a
KL or log-prob computed from the stats already includes the uniform mixture.
"""
import dataclasses
from typing import Callable, NamedTuple, Optional, Union

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from common.nn import distributions, nets


CORES = ('gru', 'classic_gru', 'keras_gru', 'block_gru')


@dataclasses.dataclass(frozen=True)
class RSSMConfig:
  """RSSM hyperparameters. Defaults: DreamerV3 (App. B); see PLANET/DREAMERV1/V2/V3 below."""
  deter: int = 4096          # size of the deterministic (recurrent) state h
  hidden: int = 1024         # units of the Linear layers around the core
  stoch: int = 32            # number of latent variables (Gaussian dims or categoricals)
  classes: int = 32          # classes per categorical; 0 = Gaussian latent
  unimix: float = 0.01       # uniform mixture of categorical probabilities (V3: 1%)
  core: str = 'block_gru'    # 'classic_gru' (PlaNet) | 'keras_gru' (V1) | 'gru' (V2) | 'block_gru' (V3)
  blocks: int = 8            # groups of the block GRU
  dyn_layers: int = 1        # hidden block-linear layers inside the block GRU
  gru_norm: str = 'layer'    # norm of the 'gru' core's gates: 'layer' (V2) | 'none' 
  update_bias: float = -1.0  # added to the GRU's update-gate pre-activation
  img_layers: int = 2        # hidden layers of the prior head p(z | h)
  obs_layers: int = 1        # hidden layers of the posterior head q(z | h, e)
  act: str = 'silu'          # activation of the Linear layers
  norm: str = 'rms'          # norm of the Linear layers: 'rms' | 'layer' | 'none'
  norm_eps: float = 1e-4     # epsilon of every norm (V3 1e-4; V2's Keras LayerNorm 1e-3)
  min_std: float = 0.1       # Gaussian std floor (PlaNet/V1)
  std_act: str = 'softplus'  # Gaussian std: 'softplus' (V1) | 'sigmoid2' (2 sigmoid(x / 2), V2)
  initial: str = 'zeros'     # initial state: 'zeros' (every reference code) | 'learned' (V3 paper)
  winit: str = 'trunc_normal'  # weight initialiser (see nets.initializer)
  outscale: float = 1.0      # init scale of the stats layers
  dtype: str = 'float32'     # compute dtype ('bfloat16' on GPU); params and state stay float32
  # Steps per iteration of the observe and imagine scans (`lax.scan(unroll=...)`), and of the
  # agents' lambda-return scans: 1 is a loop (f8817c4 rssm.py `unroll: False`), >= the length
  # unrolls fully (its `True`; its returns are a Python loop, always unrolled). Values are
  # unchanged; fewer, larger loop bodies cut per-step launch latency on a GPU (issue 32).
  unroll: int = 1

  def __post_init__(self):
    for name in ('deter', 'hidden', 'stoch', 'blocks'):
      if getattr(self, name) < 1:
        raise ValueError(f'RSSMConfig.{name}: must be >= 1, got {getattr(self, name)}.')
    if self.classes < 0 or self.classes == 1:
      raise ValueError(f'RSSMConfig.classes: use 0 (Gaussian) or >= 2, got {self.classes}.')
    checks = dict(core=CORES, gru_norm=nets.NORMS, norm=nets.NORMS,
                  std_act=('softplus', 'sigmoid2'), initial=('zeros', 'learned'))
    for name, options in checks.items():
      if getattr(self, name) not in options:
        raise ValueError(f'RSSMConfig.{name}: unknown value {getattr(self, name)!r}; '
                         f'use one of {tuple(options)}.')
    if self.core == 'block_gru' and self.deter % self.blocks:
      raise ValueError(f'RSSMConfig.deter: {self.deter} is not divisible by blocks={self.blocks}.')
    if self.unroll < 1:
      raise ValueError(f'RSSMConfig.unroll: must be >= 1 (1 = no unrolling), got {self.unroll}.')
    if not 0.0 <= self.unimix < 1.0:
      raise ValueError(f'RSSMConfig.unimix: must be in [0, 1), got {self.unimix}.')
    nets.get_act(self.act)


PLANET = RSSMConfig(deter=200, hidden=200, stoch=30, classes=0, unimix=0.0, core='classic_gru',
                    gru_norm='none', update_bias=0.0, img_layers=1, obs_layers=1, act='relu',
                    norm='none', initial='zeros', winit='glorot_uniform')
DREAMERV1 = dataclasses.replace(PLANET, act='elu', core='keras_gru')
# DreamerV2 reference code defaults (deter 1024); its Atari preset uses 600, DMC 200.
DREAMERV2 = RSSMConfig(deter=1024, hidden=1024, stoch=32, classes=32, unimix=0.0, core='gru',
                       gru_norm='layer', img_layers=1, obs_layers=1, act='elu', norm='none',
                       norm_eps=1e-3, initial='zeros', winit='glorot_uniform')
DREAMERV3 = RSSMConfig()


class RSSMState(NamedTuple):
  """deter [..., D]; stoch [..., S] (Gaussian) or [..., S, C] (one-hot); stats dict."""
  deter: chex.Array
  stoch: chex.Array
  stats: dict


class RSSM(nn.Module):
  """The RSSM as a Linen module; call its methods through `apply` (see module doc)."""
  config: RSSMConfig
  action_dim: int

  def setup(self):
    c = self.config
    dt = c.dtype
    if c.core != 'block_gru':
      self.img_in = nets.dense(c.hidden, c.winit, dtype=dt)
      self.img_in_norm = nets.Norm(c.norm, c.norm_eps, dtype=dt)
      if c.core == 'gru':
        self.cell = nets.GRUCell(c.deter, norm=c.gru_norm, update_bias=c.update_bias,
                                 winit=c.winit, norm_eps=c.norm_eps, dtype=dt)
      elif c.core == 'classic_gru':
        self.cell = nets.ClassicGRUCell(c.deter, dtype=dt)
      else:
        self.cell = nets.KerasGRUCell(c.deter, dtype=dt)
    else:
      self.dyn_in = [nets.dense(c.hidden, c.winit, dtype=dt) for _ in range(3)]
      self.dyn_in_norm = [nets.Norm(c.norm, c.norm_eps, dtype=dt) for _ in range(3)]
      self.cell = nets.BlockGRU(c.deter, c.blocks, c.dyn_layers, act=c.act, norm=c.norm,
                                update_bias=c.update_bias, winit=c.winit, norm_eps=c.norm_eps,
                                dtype=dt)
    stats_size = c.stoch * c.classes if c.classes else 2 * c.stoch
    self.img_out = nets.MLP(c.img_layers, c.hidden, c.act, c.norm, out=stats_size,
                            outscale=c.outscale, winit=c.winit, norm_eps=c.norm_eps, dtype=dt)
    self.obs_out = nets.MLP(c.obs_layers, c.hidden, c.act, c.norm, out=stats_size,
                            outscale=c.outscale, winit=c.winit, norm_eps=c.norm_eps, dtype=dt)
    if c.initial == 'learned':
      self.initial_deter = self.param('initial_deter', jax.nn.initializers.zeros, (c.deter,),
                                      jnp.float32)

  # -- distributions -------------------------------------------------------

  def _latent(self, raw):
    """(distribution of z, its stats dict) from a stats layer's output [B, stats_size].

    Categorical: unimix-ed `OneHotCategorical` [B, S, C] whose samples and mode are
    straight-through one-hots (DreamerV2, Alg. 1); stats['logits'] holds its
    log-probs. Gaussian: `Normal(mean, std)` [B, S], reparameterised samples.
    """
    c = self.config
    raw = raw.astype(jnp.float32)
    if c.classes:
      logits = raw.reshape(raw.shape[:-1] + (c.stoch, c.classes))
      dist = distributions.OneHotCategorical(logits, c.unimix, dims=1)
      return dist, {'logits': dist.logits}
    mean, std = jnp.split(raw, 2, -1)
    if c.std_act == 'softplus':
      std = jax.nn.softplus(std) + c.min_std
    else:
      std = 2 * jax.nn.sigmoid(std / 2) + c.min_std
    return distributions.Normal(mean, std, dims=1), {'mean': mean, 'std': std}

  # -- public methods --------------------------------------------------------

  def initial(self, batch_size: int) -> RSSMState:
    """The initial state for `batch_size` sequences, float32 [B, ...].

    'zeros': h_0 = 0, z_0 = 0 (the PlaNet and V1-V3 reference code). 'learned':
    h_0 = tanh(w) with a learned w, z_0 = mode of p(z | h_0) (DreamerV3 paper, App. B).
    """
    c = self.config
    if c.initial == 'learned':
      deter = jnp.broadcast_to(jnp.tanh(self.initial_deter), (batch_size, c.deter))
      dist, stats = self._latent(self.img_out(deter))
      return RSSMState(deter, dist.mode(), stats)
    deter = jnp.zeros((batch_size, c.deter), jnp.float32)
    if c.classes:
      stoch = jnp.zeros((batch_size, c.stoch, c.classes), jnp.float32)
      stats = {'logits': jnp.zeros((batch_size, c.stoch, c.classes), jnp.float32)}
    else:
      stoch = jnp.zeros((batch_size, c.stoch), jnp.float32)
      stats = {'mean': jnp.zeros((batch_size, c.stoch), jnp.float32),
               'std': jnp.ones((batch_size, c.stoch), jnp.float32)}
    return RSSMState(deter, stoch, stats)

  def _core(self, deter, stoch, action):
    c = self.config
    stoch = stoch.reshape((stoch.shape[0], -1))
    if c.core != 'block_gru':
      x = jnp.concatenate([stoch, action], -1)
      x = nets.get_act(c.act)(self.img_in_norm(self.img_in(x)))
      return self.cell(deter, x)
    # DreamerV3: actions are divided by max(1, |a|) and h, z, a get their own input layer.
    action = action / jax.lax.stop_gradient(jnp.maximum(1.0, jnp.abs(action)))
    parts = []
    for layer, norm, x in zip(self.dyn_in, self.dyn_in_norm, (deter, stoch, action)):
      parts.append(nets.get_act(c.act)(norm(layer(x))))
    return self.cell(deter, jnp.concatenate(parts, -1))

  def img_step(self, prev_state: RSSMState, action, key) -> RSSMState:
    """Prior step: h_t = f(h_{t-1}, z_{t-1}, a_{t-1}), z_t ~ p(z_t | h_t)  (PlaNet, Eq. 4).

    prev_state: RSSMState [B]; action: float [B, A]; key: PRNG key. Returns the prior [B].
    """
    chex.assert_rank(prev_state.deter, 2, custom_message='prev_state.deter: expected [B, D]')
    chex.assert_shape(action, (prev_state.deter.shape[0], self.action_dim),
                      custom_message=f'action: expected [B, {self.action_dim}] float')
    return self.prior(self._core(prev_state.deter, prev_state.stoch,
                                 action.astype(jnp.float32)), key)

  def obs_step(self, prev_state: RSSMState, prev_action, embed, is_first, key):
    """Posterior step: q(z_t | h_t, e_t) with h_t from `img_step`  (PlaNet, Eq. 4).

    Where is_first, the previous state becomes `initial` and prev_action zeros.
    prev_state: RSSMState [B]; prev_action: float [B, A]; embed: [B, E];
    is_first: bool [B]; key: PRNG key. Returns (post, prior), both RSSMState [B].
    """
    post = self.post_step(prev_state, prev_action, embed, is_first, key)
    return post, self.prior(post.deter, jax.random.split(key)[0])

  def prior(self, deter, key) -> RSSMState:
    """The prior p(z_t | h_t) at given h_t [B, D], its sample drawn with `key`."""
    dist, stats = self._latent(self.img_out(deter))
    return RSSMState(deter, dist.sample(key), stats)

  def post_step(self, prev_state: RSSMState, prev_action, embed, is_first, key) -> RSSMState:
    """`obs_step`'s posterior alone: h_t and q(z_t | h_t, e_t), without the prior head (the
    observe scan computes the priors after the loop, from all h_t at once)."""
    chex.assert_rank(embed, 2, custom_message='embed: expected [B, E]')
    batch = embed.shape[0]
    chex.assert_shape(prev_action, (batch, self.action_dim),
                      custom_message=f'prev_action: expected [B, {self.action_dim}] float')
    chex.assert_shape(is_first, (batch,), custom_message='is_first: expected bool [B]')
    chex.assert_shape(prev_state.deter, (batch, self.config.deter),
                      custom_message=f'prev_state.deter: expected [B, {self.config.deter}]')
    first = is_first.astype(bool)
    init = self.initial(batch)

    def reset(x, y):
      return jnp.where(first.reshape((batch,) + (1,) * (x.ndim - 1)), y, x)

    prev_state = jax.tree.map(reset, prev_state, init)
    prev_action = jnp.where(first[:, None], 0.0, prev_action.astype(jnp.float32))
    post_key = jax.random.split(key)[1]
    deter = self._core(prev_state.deter, prev_state.stoch, prev_action)
    x = jnp.concatenate([deter, embed.astype(jnp.float32)], -1)
    dist, stats = self._latent(self.obs_out(x))
    return RSSMState(deter, dist.sample(post_key), stats)

  def feat(self, state: RSSMState):
    """Features [h, flatten(z)]: [..., deter + stoch * max(classes, 1)] float32."""
    stoch = state.stoch.reshape(state.deter.shape[:-1] + (-1,))
    return jnp.concatenate([state.deter, stoch], -1).astype(jnp.float32)

  def _init_all(self, embed, action, key):
    state = self.initial(embed.shape[0])
    return self.obs_step(state, action, embed, jnp.ones(embed.shape[:1], bool), key)


# -- pure functions ------------------------------------------------------------

def init_params(rssm: RSSM, key, embed_dim: int):
  """Creates the RSSM's parameters for embeddings of size `embed_dim`."""
  if embed_dim < 1:
    raise ValueError(f'embed_dim: must be >= 1, got {embed_dim}.')
  init_key, sample_key = jax.random.split(key)
  embed = jnp.zeros((1, embed_dim), jnp.float32)
  action = jnp.zeros((1, rssm.action_dim), jnp.float32)
  return rssm.init(init_key, embed, action, sample_key, method=RSSM._init_all)


def _swap(tree):
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


def _float_state(state):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), state)


def observe(rssm: RSSM, params, embed, prev_action, is_first, state: Optional[RSSMState], key):
  """Posterior rollout over a sequence (PlaNet, Eq. 4), `lax.scan` over time.

  embed [B, T, E]; prev_action float [B, T, A] (action[t-1], zeros are forced
  where is_first); is_first bool [B, T]; state: RSSMState [B] (or None for
  `initial`); key: PRNG key, step t uses jax.random.split(key, T)[t].
  Returns (post, prior): RSSMState with leaves [B, T, ...].
  """
  chex.assert_rank(embed, 3, custom_message='embed: expected [B, T, E]')
  batch, length = embed.shape[:2]
  chex.assert_shape(prev_action, (batch, length, rssm.action_dim),
                    custom_message=f'prev_action: expected [B, T, {rssm.action_dim}] float')
  chex.assert_shape(is_first, (batch, length), custom_message='is_first: expected bool [B, T]')
  if state is None:
    state = rssm.apply(params, batch, method=RSSM.initial)
  chex.assert_shape(state.deter, (batch, rssm.config.deter),
                    custom_message=f'state.deter: expected [B, {rssm.config.deter}]')
  keys = jax.random.split(key, length)

  def step(prev, inputs):
    embed_t, action_t, first_t, key_t = inputs
    post = rssm.apply(params, prev, action_t, embed_t, first_t, key_t, method=RSSM.post_step)
    return post, post

  inputs = (_swap(embed), _swap(prev_action), _swap(is_first), keys)
  _, post = jax.lax.scan(step, _float_state(state), inputs,
                         unroll=min(rssm.config.unroll, length))
  # The priors read only h_t: one batched pass after the loop (as f8817c4 rssm.py `loss`
  # does), so the sequential loop carries no prior head. Step t's key as in `obs_step`.
  prior_keys = jax.vmap(lambda k: jax.random.split(k)[0])(keys)
  prior = jax.vmap(lambda deter, k: rssm.apply(params, deter, k, method=RSSM.prior))(
      post.deter, prior_keys)
  return _swap(post), _swap(prior)


def imagine(rssm: RSSM, params, start: RSSMState,
            policy_or_actions: Union[Callable, chex.Array], horizon: Optional[int], key):
  """Prior rollout (DreamerV1, Sec. 3 "imagination"), `lax.scan` over time.

  start: RSSMState [B]. With a policy `policy(state [B], key) -> action [B, A]`:
    states[0] = start, actions[t] = policy(states[t]),
    states[t+1] = img_step(states[t], actions[t]) for t < horizon; returns
    (states [B, H+1], actions [B, H+1, A]). Step t splits
    jax.random.split(key, H + 1)[t] into (policy key, img_step key).
  With an actions array [B, H, A]: states[t+1] follows actions[t]; returns
    (states [B, H+1], the given actions [B, H, A]); img_step t uses
    jax.random.split(key, H)[t]. `horizon` may be None or must equal H.
  """
  chex.assert_rank(start.deter, 2, custom_message='start.deter: expected [B, D]')
  batch = start.deter.shape[0]
  start = _float_state(start)

  def img(state, action, k):
    return rssm.apply(params, state, action, k, method=RSSM.img_step)

  def stack(first, rest):
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b], 0), first, rest)

  if callable(policy_or_actions):
    policy = policy_or_actions
    if horizon is None or int(horizon) < 0:
      raise ValueError(f'horizon: need an int >= 0 with a policy, got {horizon}.')
    keys = jax.random.split(key, int(horizon) + 1)

    def step(state, key_t):
      policy_key, img_key = jax.random.split(key_t)
      action = policy(state, policy_key)
      chex.assert_shape(action, (batch, rssm.action_dim),
                        custom_message=f'policy: must return actions [B, {rssm.action_dim}]')
      return img(state, action, img_key), (state, action)

    last, (states, actions) = jax.lax.scan(step, start, keys[:-1],
                                           unroll=max(1, min(rssm.config.unroll, int(horizon))))
    last_action = policy(last, jax.random.split(keys[-1])[0])
    states = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]], 0), states, last)
    actions = jnp.concatenate([actions, last_action[None]], 0)
    return _swap(states), jnp.swapaxes(actions, 0, 1)

  actions = jnp.asarray(policy_or_actions)
  chex.assert_rank(actions, 3, custom_message='policy_or_actions: expected actions [B, H, A]')
  if actions.shape[0] != batch or actions.shape[2] != rssm.action_dim:
    raise ValueError(f'policy_or_actions: expected actions [{batch}, H, {rssm.action_dim}], '
                     f'got {actions.shape}.')
  length = actions.shape[1]
  if horizon is not None and int(horizon) != length:
    raise ValueError(f'horizon: {horizon} does not match the actions length {length}.')
  keys = jax.random.split(key, length)

  def step_actions(state, inputs):
    action, key_t = inputs
    nxt = img(state, action, key_t)
    return nxt, nxt

  _, states = jax.lax.scan(step_actions, start, (jnp.swapaxes(actions, 0, 1), keys),
                           unroll=max(1, min(rssm.config.unroll, length)))
  return _swap(stack(start, states)), actions

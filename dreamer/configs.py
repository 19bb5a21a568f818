"""The Dreamer agent's presets over its typed configuration (`dreamer/config_types.py`).

DreamerV3 (Hafner et al., "Mastering Diverse Domains through World Models",
Nature 2025): the defaults below are the paper's and its reference code's
(Appendix, Table of hyperparameters). Presets compose in the order algorithm,
environment suite, size, then `--set` overrides (see `common.run.config`).

The size presets (`size1m` ... `size400m`, `debug`, `auto`) are in `dreamer/sizes.py`.

DreamerV1 and DreamerV2 (`dreamerv1`, `dreamerv2` below) are presets of the same
fields: latent kind (`rssm.classes`), `kl.mode`, decoder/reward distributions,
`predict_continue`, `actor.grad_*`, `retnorm.kind`, `critic.slow_target` and
per-module optimizers; the table of differences is in `dreamer/__init__.py`.
Their suite settings are in `_algo_suite`. Size presets keep V1's RSSM
Gaussian; without `--size`, V1/V2 keep their papers' sizes.
"""
import dataclasses

from common.nn import conv as conv_lib
from common.nn import kl as kl_lib
from common.nn import nets
from common.nn import optim as optim_lib
from common.nn import rssm as rssm_lib
from common.planning import planners as planning
from common.run import config as config_lib
from dreamer import actor_critic, sizes
from dreamer.config_types import (  # noqa: F401  (re-exported: configs.Config, ...)
    ActorConfig, Config, CriticConfig, DecoderConfig, DreamerConfig, EncoderConfig,
    HeadConfig, ReturnNormConfig)


_replace = config_lib.replace
_DMC_SUITES = sizes.DMC_SUITES


# ---------------------------------------------------------------- algorithms


def dreamerv3(config: Config) -> Config:
  """DreamerV3: the dataclass defaults above are V3's.

  Schedule as the reference code (danijar/dreamerv3 f8817c4, `embodied/run/train.py`):
  no random prefill (the agent acts from the first step), training starts once replay
  holds batch_size * batch_length window starts, with one update then the train ratio
  (run.pretrain 1); windows of 1 + 64 steps (replay context 1), the online queue.
  """
  return _replace(config, algo='dreamerv3', **{
      'run.train_ratio': 32.0, 'run.batch_size': 16, 'run.batch_length': 64,
      'run.envs': 16, 'run.prefill': 0, 'run.pretrain': 1, 'run.train_starts': 16 * 64,
      'replay.capacity': 5_000_000, 'replay.online': True})


def plan2explore(config: Config) -> Config:
  """Plan2Explore (Sekar et al. 2020) on the DreamerV3 agent: V3's defaults, plus an
  ensemble of 10 one-step stochastic-state predictors whose disagreement rewards an
  exploration actor that collects the data (danijar/dreamerv2 07d906e configs.yaml
  `disag_*`, `expl_*`); the task actor learns from the same replay."""
  config = dreamerv3(config)
  return _replace(config, algo='plan2explore', **{
      'agent.explore': dataclasses.replace(config.agent.explore, kind='plan2explore')})


def _adam(lr, eps, weight_decay=0.0):
  """V1/V2 optimiser: global-norm clip 100, Adam, no warmup (`common.nn.optim` kind 'adam')."""
  return optim_lib.OptimConfig(kind='adam', lr=lr, eps=eps, clip=100.0, agc=0.0, warmup=0,
                               momentum=0.9, beta2=0.999, weight_decay=weight_decay)


def dreamerv1(config: Config) -> Config:
  """DreamerV1 (Hafner et al., "Dream to Control", ICLR 2020, Sec. 3-4 and App. A/B).

  Gaussian RSSM (deter 200, stoch 30, ELU); CNN depth 32 (kernel 4, VALID, ReLU as
  the reference code); MLPs of 400 ELU units, no norm; KL max(KL, 3 nats) on the
  batch mean, no balancing; unit-variance Gaussian image, vector and reward
  likelihoods; no continue head on DMC (gamma 0.99 only), a discount predictor
  where episodes terminate (Sec. 6, set in `_algo_suite`); tanh-normal actor (4 x 400,
  init std 5, min std 1e-4) trained by backpropagating the lambda-return through
  the learned dynamics (Eq. 7), a one-hot actor with straight-through samples for
  discrete actions (Sec. 6); critic (3 x 400) regressed onto lambda-returns
  (lambda 0.95, horizon 15, Eq. 8); Adam 6e-4 (model) and 8e-5 (actor, critic),
  eps 1e-7, clip 100; batch 50 x 50; exploration: Gaussian noise 0.3 on continuous
  actions, epsilon-greedy 0.3 on discrete ones (reference `expl_amount`).
  Schedule: the paper trains C = 100 updates of 50 x 50 every 1000 env steps and
  prefills 5000 env steps; as replayed steps per agent step that is
  run.train_ratio = 100 * 50 * 50 / (1000 / action_repeat) = 250 * action_repeat
  and run.prefill = 5000 / action_repeat, set per suite in `_algo_suite`. The reference
  trains before it collects (one update as it builds the model, then `pretrain` = 100
  right after the prefill): run.pretrain = 101.
  Reference code (danijar/dreamer 56d4d44): Keras GRU cell and glorot-uniform weights;
  training windows inside complete episodes longer than 50 steps, an episode chosen
  uniformly (`replay.sample='episodes'`); imagined returns indexed as its `_train`
  (`agent.imag_targets='v1'`: the trajectory without its start state, values that
  include their own state's reward).
  """
  mlp = dict(units=400, act='elu', norm='none', outscale=1.0, winit='glorot_uniform')
  conv = dict(mults=(1, 2, 4, 8), kernel=4, padding='VALID', act='relu', norm='none',
              winit='glorot_uniform')
  return _replace(config, algo='dreamerv1', **{
      'agent.rssm': rssm_lib.DREAMERV1,
      'agent.encoder': EncoderConfig(depth=32, downsample='stride', mlp_layers=2,
                                     mlp_units=400, symlog_inputs=False, **conv),
      'agent.decoder': DecoderConfig(depth=32, upsample='transpose', bspace=0, mlp_layers=2,
                                     mlp_units=400, image_dist='normal', vector_dist='normal',
                                     outscale=1.0, **conv),
      'agent.reward_head': HeadConfig(layers=2, dist='normal', **mlp),
      'agent.continue_head': HeadConfig(layers=3, dist='binary', **mlp),  # where episodes end
      'agent.actor': ActorConfig(layers=4, unimix=0.0, continuous_dist='tanh_normal',
                                 min_std=1e-4, init_std=5.0, entropy=0.0,
                                 grad_discrete='dynamics', grad_continuous='dynamics',
                                 explore_noise=0.3, eval_sample=False, **mlp),
      'agent.critic': CriticConfig(layers=3, dist='normal', slow_target=False,
                                   slow_regularizer=0.0, replay_loss=False, replay_grad=False,
                                   slow_rate=1.0, slow_every=1, **mlp),
      'agent.kl': kl_lib.KLConfig(mode='plain', free=3.0, free_avg=True, scale=1.0),
      'agent.retnorm': ReturnNormConfig(kind='none'),
      'agent.imag_horizon': 15, 'agent.horizon': 100.0, 'agent.lam': 0.95,
      'agent.continue_discount': False, 'agent.predict_continue': False,
      'agent.continue_scale': 0.0, 'agent.repval_scale': 0.0,
      'agent.reward_transform': 'none', 'agent.imag_starts': 0, 'agent.replay_context': 0,
      'agent.imag_targets': 'v1',
      'agent.single_optimizer': False,
      'agent.opt': _adam(6e-4, 1e-7), 'agent.actor_opt': _adam(8e-5, 1e-7),
      'agent.critic_opt': _adam(8e-5, 1e-7),
      'run.batch_size': 50, 'run.batch_length': 50, 'run.envs': 1,
      'run.train_ratio': 250.0, 'run.prefill': 5000, 'run.pretrain': 101,
      'replay.sample': 'episodes'})


def dreamerv2(config: Config) -> Config:
  """DreamerV2 (Hafner et al., "Mastering Atari with Discrete World Models", ICLR 2021).

  32 x 32 categorical latents with straight-through samples, layer-normed GRU
  (deter 1024; Atari 600, DMC 200); KL balancing alpha 0.8 (Alg. 2) on the batch mean; CNN depth 48
  (kernel 4, VALID, ELU); MLPs 4 x 400 ELU, no norm; unit-variance Gaussian image, vector,
  reward and critic likelihoods (the reference's 'mse' heads), tanh-squashed rewards;
  discount head trained towards gamma (1 - terminal), the first imagined discount from
  replay; actor
  REINFORCE for discrete and dynamics backprop for continuous actions (`agent.actor.grad_*`,
  'both' mixes them with `grad_mix`); one-hot or truncated-normal policy, entropy 2e-3
  (Atari 1e-3, DMC 1e-4, Crafter 3e-3); slow target critic copied every 100 updates
  (Sec. 2.2); Adam eps 1e-5, clip 100, weight decay 1e-6; lr 1e-4 (model), 8e-5 (actor),
  2e-4 (critic); batch 16 x 50; train every 5 agent steps (ratio 16 * 50 / 5 = 160), prefill
  10k, then 1 + 1 updates before collecting (the reference trains once to build its
  variables, then `pretrain` times). These are the defaults of the reference code's final
  configs.yaml (the one with the crafter and dmc_vision/dmc_proprio sections; read
  2026-11-24, danijar/dreamerv2 07d906e); `_algo_suite` sets the Atari, DMC and Crafter
  presets. Also from the reference code: glorot-uniform weights, Keras LayerNorm epsilon
  1e-3, windows inside complete episodes longer than 50 steps chosen uniformly, with
  `prioritize_ends` (not on DMC), returns indexed as its `ActorCritic`
  (`agent.imag_targets='v2'`), weight decay w *= 1 - 1e-6 per update.
  """
  mlp = dict(layers=4, units=400, act='elu', norm='none', outscale=1.0, norm_eps=1e-3,
             winit='glorot_uniform')
  conv = dict(depth=48, mults=(1, 2, 4, 8), kernel=4, padding='VALID', act='elu', norm='none',
              norm_eps=1e-3, winit='glorot_uniform')
  return _replace(config, algo='dreamerv2', **{
      'agent.rssm': rssm_lib.DREAMERV2,
      'agent.encoder': EncoderConfig(downsample='stride', mlp_layers=4, mlp_units=400,
                                     symlog_inputs=False, **conv),
      'agent.decoder': DecoderConfig(upsample='transpose', bspace=0, mlp_layers=4,
                                     mlp_units=400, image_dist='normal', vector_dist='normal',
                                     outscale=1.0, **conv),
      'agent.reward_head': HeadConfig(dist='normal', **mlp),
      'agent.continue_head': HeadConfig(dist='binary', **mlp),
      'agent.actor': ActorConfig(unimix=0.0, continuous_dist='trunc_normal', min_std=0.1,
                                 init_std=0.0, entropy=2e-3, grad_discrete='reinforce',
                                 grad_continuous='dynamics', grad_mix=0.1, explore_noise=0.0,
                                 eval_sample=False, **mlp),
      'agent.critic': CriticConfig(dist='normal', slow_target=True, slow_rate=1.0, slow_every=100,
                                   slow_regularizer=0.0, replay_loss=False, replay_grad=False,
                                   **mlp),
      'agent.kl': kl_lib.KLConfig(mode='balanced', balance=0.8, free=0.0, free_avg=True,
                                  scale=1.0),
      'agent.retnorm': ReturnNormConfig(kind='none'),
      'agent.imag_horizon': 15, 'agent.horizon': 100.0, 'agent.lam': 0.95,
      'agent.continue_discount': True, 'agent.predict_continue': True,
      'agent.continue_scale': 1.0, 'agent.repval_scale': 0.0,
      'agent.reward_transform': 'tanh', 'agent.imag_starts': 0, 'agent.replay_context': 0,
      'agent.imag_targets': 'v2', 'agent.replay_start_continue': True, 'agent.model_first': True,
      'agent.single_optimizer': False,
      'agent.opt': _adam(1e-4, 1e-5, 1e-6), 'agent.actor_opt': _adam(8e-5, 1e-5, 1e-6),
      'agent.critic_opt': _adam(2e-4, 1e-5, 1e-6),
      'run.batch_size': 16, 'run.batch_length': 50, 'run.envs': 1,
      'run.train_ratio': 160.0, 'run.prefill': 10_000, 'run.pretrain': 2,
      'replay.capacity': 2_000_000, 'replay.sample': 'episodes', 'replay.prioritize_ends': True})


ALGORITHMS = {'dreamerv1': dreamerv1, 'dreamerv2': dreamerv2, 'dreamerv3': dreamerv3,
              'plan2explore': plan2explore}


# ---------------------------------------------------------------- suites


def atari(config: Config) -> Config:
  """Atari 200M: 96x96 grayscale, action repeat 4, sticky actions, all 18 actions, no no-ops,
  train ratio 32 (danijar/dreamerv3 2411f7d configs.yaml `atari`, the configuration of the
  published atari57 curves; the newer f8817c4 draws up to 30 no-ops)."""
  return _replace(config, suite='atari', **{
      'env.size': (96, 96), 'env.gray': True, 'env.action_repeat': 4, 'env.sticky': True,
      # No agent-step limit: ALE ends the episode as a cut at 108,000 frames (27,000 agent
      # steps), the reference's `length=108000` (embodied/envs/atari.py).
      'env.actions': 'all', 'env.lives': 'unused', 'env.noops': 0, 'env.time_limit': 0,
      'run.train_ratio': 32.0, 'run.steps': 50_000_000})


def atari100k(config: Config) -> Config:
  """Atari 100k: 400k frames (110k agent steps), one env, train ratio 256; 64x64 RGB, no
  sticky actions, all 18 actions, no no-ops, episodes cut at 100k frames (danijar/dreamerv3
  2411f7d `atari100k`, the configuration of the published curves; f8817c4 uses the minimal
  set and 30 no-ops)."""
  return _replace(config, suite='atari100k', **{
      'env.size': (64, 64), 'env.gray': False, 'env.action_repeat': 4, 'env.sticky': False,
      'env.actions': 'all', 'env.lives': 'unused', 'env.noops': 0, 'env.time_limit': 25_000,
      'run.train_ratio': 256.0, 'run.envs': 1, 'run.steps': 110_000})


def dmc_proprio(config: Config) -> Config:
  """DMC from proprioceptive vectors: action repeat 2, train ratio 512, size12m (set by the
  default size), as danijar/dreamerv3 2411f7d configs.yaml `dmc_proprio` (the commit that
  published the score files; f8817c4 has repeat 1, ratio 1024, size1m). The published
  dmc_proprio curves themselves are older still (the 2023 agent of 423291a).

  Budget 500k env frames = 250k agent steps: the x-axis (frames) of the published curves, as
  experiments/suites.py counts it (the reference config runs 300k agent steps).
  """
  return _replace(config, suite='dmc_proprio', **{
      'env.action_repeat': 2, 'env.pixels': False, 'env.proprio': True,
      'run.train_ratio': 512.0, 'run.steps': 250_000})


def dmc_vision(config: Config) -> Config:
  """DMC from 64x64 pixels: action repeat 2, train ratio 512, size12m (the default size), as
  danijar/dreamerv3 2411f7d `dmc_vision`, whose published curves count frames in steps of 2
  (f8817c4: repeat 1, ratio 256, size200m). 1M env frames = 500k agent steps (the curves'
  x-axis; the reference config runs 600k)."""
  return _replace(config, suite='dmc_vision', **{
      'env.action_repeat': 2, 'env.pixels': True, 'env.proprio': False, 'env.size': (64, 64),
      'run.train_ratio': 512.0, 'run.steps': 500_000})


def crafter(config: Config) -> Config:
  """Crafter: one env, train ratio 512, 1M steps."""
  return _replace(config, suite='crafter', **{
      'env.size': (64, 64), 'run.train_ratio': 512.0, 'run.envs': 1, 'run.steps': 1_000_000})


def craftax(config: Config) -> Config:
  """Craftax (JAX Crafter): not in the V3 paper; mirrors the Crafter preset."""
  return _replace(config, suite='craftax', **{
      'env.size': (64, 64), 'run.train_ratio': 512.0, 'run.envs': 1, 'run.steps': 1_000_000})


def minecraft(config: Config) -> Config:
  """Minecraft Diamond (V3 code: 64x64 images plus inventory vectors, 16 envs, the default
  train ratio 32 in both 2411f7d and f8817c4)."""
  return _replace(config, suite='minecraft', **{
      'env.size': (64, 64), 'run.train_ratio': 32.0, 'run.steps': 100_000_000})


def gym(config: Config) -> Config:
  """Any gymnasium env: vector observations, one env, train ratio 512."""
  return _replace(config, suite='gym', **{
      'env.pixels': False, 'env.proprio': True, 'run.train_ratio': 512.0, 'run.envs': 1,
      'run.steps': 100_000})


def gymnax(config: Config) -> Config:
  """gymnax classic control and MinAtar (JAX-native; `--loop device`): as the gym preset."""
  return _replace(gym(config), suite='gymnax')


def _algo_suite(config: Config) -> Config:
  """Where the papers' suite settings differ by algorithm: the one place (after every suite).

  V3 keeps the suite presets above. V1 (DMC paper, App. A) and V2 (Atari paper, App. C;
  DMC from its reference code) replace them:

  | algo, suite      | train_ratio (replayed / agent step)   | prefill, pretrain | other                       |
  |------------------|---------------------------------------|---------|-----------------------------|
  | V1, dmc_*        | 100 x 50 x 50 per 1000 env steps      | 5000 env steps, 101 | action repeat 2, no discount head |
  | V1, other        | as DMC                                | as DMC  | discount head (targets 0 / gamma, scale 10), no imagination from a sequence's last step |
  | V2, atari        | 16 x 50 every 16 steps = 50           | 50000, 2 | 64x64 gray, minimal action set, up to 30 no-ops, deter 600, gamma 0.999, KL scale 0.1, free 0, discount-head scale 5, tanh rewards, lr 2e-4/4e-5/1e-4, entropy 1e-3 |
  | V2, dmc_*        | 16 x 50 every 5 steps = 160           | 1000, 101 | deter 200, free nats 1, no discount head, raw rewards, lr 3e-4/8e-5/8e-5, entropy 1e-4, action repeat 2, no prioritize_ends |
  | V2, crafter      | 160                                   | 10000, 2 | layer norm everywhere, gamma 0.999, lr 1e-4/1e-4/1e-4, entropy 3e-3 |
  | V2, other        | 160 (the reference default)           | 10000, 2 | reference code defaults     |
  """
  algo, suite = config.algo, config.suite
  if algo == 'dreamerv1':
    repeat = config.env.action_repeat
    config = _replace(config, **{'run.train_ratio': 100 * 50 * 50 / (1000 / repeat),
                                 'run.prefill': 5000 // repeat})
    if suite in _DMC_SUITES:
      return config
    # Episodes that terminate (Atari, DMLab in the paper's Sec. 6): a discount predictor
    # trained towards soft labels 0 and gamma, scale 10 (reference `pcont`, `pcont_scale`).
    # Without it imagined episodes never end and every action looks alike.
    return _replace(config, **{'agent.predict_continue': True, 'agent.continue_discount': True,
                               'agent.continue_scale': 10.0, 'agent.imag_skip_last': True})
  if algo != 'dreamerv2':
    return config
  if suite in ('atari', 'atari100k'):
    agent = config.agent
    return _replace(config, **{
        'env.size': (64, 64), 'env.gray': True, 'env.actions': 'needed', 'env.noops': 30,
        'agent.rssm.deter': 600, 'agent.rssm.hidden': 600, 'agent.horizon': 1000.0,
        'agent.kl': dataclasses.replace(agent.kl, scale=0.1, free=0.0),
        'agent.continue_scale': 5.0, 'agent.predict_continue': True,
        'agent.reward_transform': 'tanh', 'agent.actor.entropy': 1e-3,
        'agent.opt': _adam(2e-4, 1e-5, 1e-6), 'agent.actor_opt': _adam(4e-5, 1e-5, 1e-6),
        'agent.critic_opt': _adam(1e-4, 1e-5, 1e-6),
        'run.train_ratio': 16 * 50 / 16, 'run.prefill': 50_000})
  if suite in _DMC_SUITES:
    agent = config.agent
    return _replace(config, **{
        'env.action_repeat': 2, 'agent.rssm.deter': 200, 'agent.rssm.hidden': 200,
        'agent.kl': dataclasses.replace(agent.kl, free=1.0, scale=1.0),
        'agent.predict_continue': False, 'agent.continue_discount': False,
        'agent.continue_scale': 0.0, 'agent.reward_transform': 'none',
        'agent.actor.entropy': 1e-4,
        'agent.opt': _adam(3e-4, 1e-5, 1e-6), 'agent.actor_opt': _adam(8e-5, 1e-5, 1e-6),
        'agent.critic_opt': _adam(8e-5, 1e-5, 1e-6),
        'run.train_ratio': 16 * 50 / 5, 'run.prefill': 1000, 'run.pretrain': 101,
        'replay.prioritize_ends': False})
  config = _replace(config, **{'run.train_ratio': 16 * 50 / 5, 'run.prefill': 10_000})
  if suite == 'crafter':  # configs.yaml `crafter`: `.*\.norm: layer`
    agent = config.agent
    layer = lambda module: dataclasses.replace(module, norm='layer')
    config = _replace(config, **{
        'agent.rssm': layer(agent.rssm), 'agent.encoder': layer(agent.encoder),
        'agent.decoder': layer(agent.decoder), 'agent.reward_head': layer(agent.reward_head),
        'agent.continue_head': layer(agent.continue_head),
        'agent.actor': dataclasses.replace(agent.actor, norm='layer', entropy=3e-3),
        'agent.critic': layer(agent.critic), 'agent.horizon': 1000.0,
        'agent.opt': _adam(1e-4, 1e-5, 1e-6),
        'agent.actor_opt': _adam(1e-4, 1e-5, 1e-6), 'agent.critic_opt': _adam(1e-4, 1e-5, 1e-6)})
  return config


def _with_algo_suite(suite):
  def preset(config: Config) -> Config:
    return _algo_suite(suite(config))
  preset.__name__ = suite.__name__
  preset.__doc__ = suite.__doc__
  return preset


SUITES = {name: _with_algo_suite(suite) for name, suite in {
    'atari': atari, 'atari100k': atari100k, 'dmc_proprio': dmc_proprio,
    'dmc_vision': dmc_vision, 'crafter': crafter, 'craftax': craftax,
    'minecraft': minecraft, 'gym': gym, 'gymnax': gymnax,
}.items()}


def suite_for_env(name: str) -> str:
  """The default suite of an env name, from its prefix (dmc defaults to pixels)."""
  prefixes = [('atari100k_', 'atari100k'), ('atari_', 'atari'), ('dmc_', 'dmc_vision'),
              ('crafter_', 'crafter'), ('craftax', 'craftax'), ('minecraft_', 'minecraft'),
              ('gym_', 'gym'), ('gymnax_', 'gymnax'), ('mjx_', 'dmc_proprio')]
  for prefix, suite in prefixes:
    if name.startswith(prefix):
      return suite
  raise ValueError(
      f'env: no suite for {name!r}; use one of the prefixes '
      f'{", ".join(p for p, _ in prefixes)} or pass --suite.')


# ---------------------------------------------------------------- presets


def validate(config: Config) -> None:
  """Cross-field checks of the agent config (one-line errors naming the key)."""
  agent = config.agent
  if agent.rssm.core == 'block_gru' and agent.rssm.deter % agent.rssm.blocks:
    raise ValueError(f'agent.rssm.deter={agent.rssm.deter} must be divisible by '
                     f'agent.rssm.blocks={agent.rssm.blocks}.')
  if agent.imag_horizon < 1:
    raise ValueError(f'agent.imag_horizon must be >= 1, got {agent.imag_horizon}.')
  if agent.horizon <= 1:
    raise ValueError(f'agent.horizon must be > 1 (discount = 1 - 1/horizon), got {agent.horizon}.')
  if config.run.batch_length < 2:
    raise ValueError(f'run.batch_length must be >= 2, got {config.run.batch_length}.')
  choices = {'agent.imag_targets': actor_critic.TARGETS,
             'agent.policy': ('actor',) + planning.PLANNERS,
             'agent.encoder.downsample': nets.DOWNSAMPLES, 'agent.decoder.upsample': nets.UPSAMPLES,
             'agent.encoder.conv_grad': conv_lib.WEIGHT_GRADS,
             'agent.decoder.conv_grad': conv_lib.WEIGHT_GRADS,
             'agent.actor.continuous_dist': actor_critic.CONTINUOUS_DISTS,
             'agent.actor.grad_discrete': actor_critic.ACTOR_GRADS,
             'agent.actor.grad_continuous': actor_critic.ACTOR_GRADS}
  for key, options in choices.items():
    if config_lib.get(config, key) not in options:
      raise ValueError(f'{key}={config_lib.get(config, key)!r}: use one of {options}.')
  decoder = agent.decoder
  if decoder.padding == 'SAME' and decoder.bspace:
    top = decoder.depth * decoder.mults[-1]
    if agent.rssm.deter % decoder.bspace or top % decoder.bspace:
      raise ValueError(f'agent.decoder.bspace={decoder.bspace} must divide agent.rssm.deter='
                       f'{agent.rssm.deter} and the decoder\'s top channels ({top}); '
                       'use agent.decoder.bspace=0 for a dense first layer.')
  if agent.continue_discount and not agent.predict_continue:
    raise ValueError('agent.continue_discount=True discounts only through the continue head; '
                     'with agent.predict_continue=False set agent.continue_discount=False.')
  if agent.replay_context < 0:
    raise ValueError(f'agent.replay_context must be >= 0, got {agent.replay_context}.')
  if agent.replay_context and not agent.rssm.classes:
    raise ValueError('agent.replay_context needs a categorical latent (agent.rssm.classes > 0); '
                     'set agent.replay_context=0 for a Gaussian one.')
  if agent.imag_starts > config.run.batch_length:
    raise ValueError(f'agent.imag_starts={agent.imag_starts} exceeds run.batch_length='
                     f'{config.run.batch_length}.')


PRESETS = config_lib.Presets(
    base=Config, algos=ALGORITHMS, suites=SUITES, sizes={'auto': sizes.auto, **sizes.SIZES},
    suite_for_env=suite_for_env, default_size='auto', default_algo='dreamerv3',
    validators=(validate,), auto_sizes=sizes.AUTO_SIZES)

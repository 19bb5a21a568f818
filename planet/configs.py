"""Typed configuration of the PlaNet agent and its presets.

PlaNet (Hafner et al., "Learning Latent Dynamics for Planning from Pixels",
ICML 2019). Defaults are the paper's (Sec. 4-5, App. A) and, where the paper
is silent, its reference code's (google-research/planet, scripts/configs.py):

  * RSSM: GRU with 200 units, 30-dim diagonal Gaussian stochastic state with
    softplus std + 0.1, ReLU, zero initial state (`common.nn.rssm.PLANET`).
  * Encoder / decoder: the convolutional networks of World Models (Ha &
    Schmidhuber 2018): 4 stride-2 4x4 'valid' convolutions of depth
    32, 64, 128, 256 with ReLU; decoder Linear(1024) -> 1x1 map -> transposed
    convolutions with kernels 5, 5, 6, 6; unit-variance Gaussian pixels.
  * Reward model: the paper's appendix describes the non-recurrent functions
    as fully connected ReLU layers; the released code's reward head is
    3 x 300 ReLU with a unit-variance Gaussian output, used here.
  * Loss: Eq. 3 with free nats 3 clipping each (batch, time) step's KL, as the
    reference code does (training/utility.py: mean of max(KL_bt, 3)), reward
    log-likelihood scaled by 10 (reference code),
    latent overshooting (Eq. 7) available but off (reference default).
  * Adam, lr 1e-3, eps 1e-4, global-norm clip 1000, batch 50 sequences of
    50 steps, images quantised to 5 bits with uniform dequantisation noise.
  * Planning: CEM, horizon 12, 1000 candidates, top 100, 10 iterations;
    Gaussian exploration noise 0.3 on the planned action while collecting.
  * Action repeat (Sec. 5): cartpole 8, walker 2, finger 2, others 4
    (cheetah, reacher, cup).

Training schedule (paper Sec. 5: "5 seed episodes with random actions, then
collect one episode after every C = 100 update steps") in the shared train
loop's terms (`run.prefill`, `run.train_ratio` = replayed steps per agent
step): with episodes of L = 1000 / R agent steps (R the action repeat) and
B x T = 50 x 50 replayed steps per update,

    run.prefill     = 5 (L + 1)               (the +1 is the reset step)
    run.train_ratio = C B T / L = 100 * 2500 * R / 1000 = 250 R
    run.pretrain    = C = 100                 (the first C updates precede the first episode)

e.g. cartpole (R = 8): prefill 630, train ratio 2000. The train loop spreads
the updates over the episode instead of running them between episodes; the
ratio of updates to data is the same. `paper_schedule` computes both and is
applied by the suite and size presets; a later `--set env.action_repeat=...`
does not recompute them, so set `run.train_ratio` / `run.prefill` with it.
"""
import dataclasses

from common.envs.config import EnvConfig
from common.nn import kl as kl_lib
from common.nn import optim as optim_lib
from common.nn import rssm as rssm_lib
from common.replay import host as replay_lib
from common.run import config as config_lib
from common.run.config import RunConfig


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  depth: int = 32                 # channels of layer i are depth * mults[i]
  mults: tuple = (1, 2, 4, 8)     # one stride-2 convolution per entry (64x64 -> 2x2x256)
  kernel: int = 4                 # convolution kernel size ('valid' padding)
  act: str = 'relu'               # PlaNet reference: ReLU


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  depth: int = 32                 # mirrors the encoder
  mults: tuple = (1, 2, 4, 8)
  act: str = 'relu'


@dataclasses.dataclass(frozen=True)
class PlannerConfig:
  horizon: int = 12               # planning horizon H
  candidates: int = 1000          # action sequences sampled per CEM iteration
  top_k: int = 100                # elite sequences the belief is refit to
  iterations: int = 10            # CEM iterations per environment step


@dataclasses.dataclass(frozen=True)
class PlanetConfig:
  encoder: EncoderConfig = EncoderConfig()
  decoder: DecoderConfig = DecoderConfig()
  rssm: rssm_lib.RSSMConfig = rssm_lib.PLANET
  reward_layers: int = 3          # hidden layers of the reward model
  reward_units: int = 300         # units per hidden layer of the reward model
  reward_act: str = 'relu'
  kl: kl_lib.KLConfig = kl_lib.KLConfig(mode='plain', free=3.0, free_avg=False)
  image_scale: float = 1.0        # weight of the image log-likelihood
  reward_scale: float = 10.0      # weight of the reward log-likelihood (reference code)
  image_bits: int = 5             # images quantised to this many bits, plus U(0, 2^-bits) noise
  overshooting: int = 0           # latent overshooting distance D (Eq. 7); 0 or 1 = off
  overshooting_scale: float = 1.0  # beta of the overshooting KL terms of distance 2..D
  opt: optim_lib.OptimConfig = optim_lib.OptimConfig(
      kind='adam', lr=1e-3, eps=1e-4, clip=1000.0, agc=0.0, warmup=0)
  planner: PlannerConfig = PlannerConfig()
  explore_noise: float = 0.3      # std of the Gaussian noise added to planned actions in 'train' mode
  report_context: int = 5         # open-loop video: observed frames before predicting open loop
  report_sequences: int = 4       # sequences side by side in the video

  def __post_init__(self):
    if self.image_bits < 1 or self.image_bits > 8:
      raise ValueError(f'agent.image_bits: must be in 1..8, got {self.image_bits}.')
    if self.overshooting < 0:
      raise ValueError(f'agent.overshooting: must be >= 0, got {self.overshooting}.')
    if self.planner.top_k > self.planner.candidates:
      raise ValueError(f'agent.planner.top_k ({self.planner.top_k}) must not exceed '
                       f'agent.planner.candidates ({self.planner.candidates}).')
    for name in ('horizon', 'candidates', 'top_k', 'iterations'):
      if getattr(self.planner, name) < 1:
        raise ValueError(f'agent.planner.{name}: must be >= 1.')
    if self.explore_noise < 0:
      raise ValueError(f'agent.explore_noise: must be >= 0, got {self.explore_noise}.')


@dataclasses.dataclass(frozen=True)
class Config:
  algo: str = 'planet'
  suite: str = 'dmc_vision'
  size: str = 'default'
  run: RunConfig = RunConfig()
  env: EnvConfig = EnvConfig(name='dmc_cartpole_swingup')
  replay: replay_lib.ReplayConfig = replay_lib.ReplayConfig()
  agent: PlanetConfig = PlanetConfig()


_replace = config_lib.replace


# ---------------------------------------------------------------- schedule

DMC_EPISODE = 1000  # simulator steps per DMC episode


def paper_schedule(config: Config, seed_episodes: int = 5, updates_per_episode: int = 100,
                   episode_steps: int = DMC_EPISODE) -> Config:
  """run.prefill, run.train_ratio and run.pretrain of PlaNet's schedule (module docstring)."""
  length = max(1, episode_steps // config.env.action_repeat)
  replayed = updates_per_episode * config.run.batch_size * config.run.batch_length
  return _replace(config, **{
      'run.prefill': seed_episodes * (length + 1),
      'run.train_ratio': float(replayed) / length, 'run.pretrain': updates_per_episode})


# ---------------------------------------------------------------- algorithms


def planet(config: Config) -> Config:
  """PlaNet: the dataclass defaults above; one environment, batch 50 x 50."""
  return _replace(config, algo='planet', **{
      'run.envs': 1, 'run.eval_envs': 1, 'run.batch_size': 50, 'run.batch_length': 50,
      'run.eval_episodes': 5, 'agent': PlanetConfig()})


ALGORITHMS = {'planet': planet}


# ---------------------------------------------------------------- suites

# PlaNet, Sec. 5: "R = 2 for walker and finger, R = 8 for cartpole, R = 4 for the others."
ACTION_REPEAT = {'cartpole': 8, 'walker': 2, 'finger': 2, 'cheetah': 4, 'reacher': 4,
                 'cup': 4, 'ball_in_cup': 4}
DEFAULT_ACTION_REPEAT = 4


def action_repeat(env_name: str) -> int:
  """PlaNet's action repeat for a `dmc_<domain>_<task>` (or `mjx_...`) name (4 for unlisted
  domains)."""
  task = env_name[4:] if env_name.startswith(('dmc_', 'mjx_')) else env_name
  for domain in sorted(ACTION_REPEAT, key=len, reverse=True):
    if task.startswith(domain + '_'):
      return ACTION_REPEAT[domain]
  return DEFAULT_ACTION_REPEAT


def dmc_vision(config: Config) -> Config:
  """DMC from 64x64 pixels only, PlaNet's per-task action repeat, 1000 episodes."""
  repeat = action_repeat(config.env.name)
  length = DMC_EPISODE // repeat
  config = _replace(config, suite='dmc_vision', **{
      'env.action_repeat': repeat, 'env.pixels': True, 'env.proprio': False,
      'env.size': (64, 64), 'env.camera': -1,
      'run.steps': 1000 * (length + 1), 'run.eval_every': 10 * (length + 1)})
  return paper_schedule(config)


SUITES = {'dmc_vision': dmc_vision}


def suite_for_env(name: str) -> str:
  """dmc_* and mjx_* (the DMC tasks in MJX, pixels ray cast in JAX) -> dmc_vision; other
  envs get no suite preset (PlaNet needs pixels and continuous actions; `make_agent` checks
  the spaces)."""
  return 'dmc_vision' if name.startswith(('dmc_', 'mjx_')) else ''


# ---------------------------------------------------------------- sizes


def default(config: Config) -> Config:
  """The paper's model (the dataclass defaults)."""
  return dataclasses.replace(config, size='default')


def debug(config: Config) -> Config:
  """A tiny model, planner and schedule that train a few hundred steps in seconds on a CPU."""
  config = _replace(config, size='debug', **{
      'agent.encoder.depth': 8, 'agent.decoder.depth': 8,
      'agent.rssm': dataclasses.replace(rssm_lib.PLANET, deter=32, hidden=32, stoch=8),
      'agent.reward_layers': 1, 'agent.reward_units': 32,
      'agent.planner': PlannerConfig(horizon=4, candidates=32, top_k=4, iterations=2),
      'agent.report_sequences': 2,
      'run.batch_size': 4, 'run.batch_length': 16, 'run.eval_episodes': 1,
      'run.log_every': 5.0, 'run.report_every': 30.0, 'run.save_every': 30.0,
      'replay.capacity': 100_000})
  # Keep the paper's updates-to-data ratio at the debug batch, but with one seed episode.
  return paper_schedule(config, seed_episodes=1)


def small(config: Config) -> Config:
  """Half the paper's widths (deter / hidden 100, CNN depth 16) and 16 x 32 batches, with the
  paper's planner and schedule (C = 100 updates per episode at this batch): the size that
  learns on a 2-core CPU within a session (BENCHMARKS.md)."""
  config = _replace(config, size='small', **{
      'agent.encoder.depth': 16, 'agent.decoder.depth': 16,
      'agent.rssm': dataclasses.replace(rssm_lib.PLANET, deter=100, hidden=100),
      'run.batch_size': 16, 'run.batch_length': 32})
  return paper_schedule(config)


SIZES = {'default': default, 'small': small, 'debug': debug}


# ---------------------------------------------------------------- presets


PRESETS = config_lib.Presets(
    base=Config, algos=ALGORITHMS, suites=SUITES, sizes=SIZES,
    suite_for_env=suite_for_env, default_size='default', default_algo='planet')

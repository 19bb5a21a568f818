"""Typed configuration of World Models (Ha & Schmidhuber, 2018) and its presets.

Defaults are the paper's and its reference code's (Appendix A): VAE z 32, KL tolerance 0.5,
Adam 1e-4, batch 100, 10 epochs; MDN-RNN with 256 LSTM units, 5 mixtures, Adam 1e-3 clipped at
1.0, batch 100; linear controller trained by CMA-ES with population 64, 16 rollouts per
candidate, sigma 0.1. The `doom` suite switches to z 64, 512 units, the done (restart) head,
[z, c, h] controller inputs and training inside the dream at temperature 1.15.

Shared run fields used here: `run.seed`, `run.logdir`, `run.envs` (env worker processes),
`run.eval_episodes` (final evaluation trials; the paper's 100), `run.keep_checkpoints`,
`env.time_limit` (steps per real episode), `env.parallel` ('process' or 'none').
`run.steps` is not used: each stage has its own length below.
"""
import dataclasses

from common.envs.config import EnvConfig
from common.replay.host import ReplayConfig
from common.run import config as config_lib
from common.run.config import RunConfig

ENVS = {'car_racing': 'CarRacing-v3', 'doom_take_cover': 'VizdoomTakeCover-v1'}


@dataclasses.dataclass(frozen=True)
class CollectConfig:
  episodes: int = 10_000        # random-policy rollouts written to disk (paper: 10,000)
  hold: int = 10                # a random action is held for 1..hold steps


@dataclasses.dataclass(frozen=True)
class VAEConfig:
  z_size: int = 32              # latent size (64 for Doom)
  kl_tolerance: float = 0.5     # KL clipped below at kl_tolerance * z_size per frame
  lr: float = 1e-4
  batch_size: int = 100
  epochs: int = 10              # passes over all collected frames
  chunk_episodes: int = 200     # episodes held in memory at a time while training
  save_every: int = 1000        # gradient steps between checkpoints


@dataclasses.dataclass(frozen=True)
class MDNRNNConfig:
  hidden: int = 256             # LSTM units (512 for Doom)
  mixtures: int = 5             # Gaussians per latent dimension
  predict_done: bool = False    # also predict the episode end (Doom's "restart" flag)
  done_weight: float = 10.0     # weight of positive done examples (the reference's restart factor)
  lr: float = 1e-3
  min_lr: float = 1e-5
  lr_decay: float = 1.0         # per-step multiplicative decay of lr, floored at min_lr (Doom 0.99999)
  grad_clip: float = 1.0        # each gradient element clipped to +-grad_clip (reference clip_by_value)
  batch_size: int = 100
  # 'windows' (CarRacing reference rnn.py): random windows of seq_len transitions inside one
  # episode, each from a zero state. 'packed' (Doom reference rnn_train.py): every epoch joins
  # the shuffled episodes into batch_size streams cut into chunks of seq_len frames, the state
  # carried from chunk to chunk, the restart flag as an input (and as the done target).
  sequences: str = 'windows'
  seq_len: int = 999            # transitions per window ('windows'), frames per chunk ('packed')
  steps: int = 4000             # gradient steps
  save_every: int = 500


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
  use_cell: bool = False        # inputs [z, c, h] (Doom reference) instead of [z, h]


@dataclasses.dataclass(frozen=True)
class EvolveConfig:
  where: str = 'real'           # 'real' environment or 'dream' (inside the MDN-RNN)
  population: int = 64
  rollouts: int = 16            # episodes per candidate; fitness is their mean return
  sigma: float = 0.1            # initial CMA-ES step size
  weight_decay: float = 0.01    # L2 penalty on candidates (reference es.py)
  generations: int = 2000
  temperature: float = 1.0      # tau of the dream's MDN-RNN sampling
  dream_steps: int = 2100       # longest dream episode
  select_every: int = 25        # generations between evaluations of the search mean
  select_episodes: int = 64     # real-env episodes per such evaluation (the dream uses
                                # population x rollouts, the reference's 1,024)


@dataclasses.dataclass(frozen=True)
class WorldModelsConfig:
  collect: CollectConfig = CollectConfig()
  vae: VAEConfig = VAEConfig()
  mdnrnn: MDNRNNConfig = MDNRNNConfig()
  controller: ControllerConfig = ControllerConfig()
  evolve: EvolveConfig = EvolveConfig()


@dataclasses.dataclass(frozen=True)
class Config:
  algo: str = 'world_models'
  suite: str = ''
  size: str = ''
  run: RunConfig = RunConfig()
  env: EnvConfig = EnvConfig(name='car_racing')
  replay: ReplayConfig = ReplayConfig()   # unused: rollouts go to `logdir/rollouts`
  agent: WorldModelsConfig = WorldModelsConfig()


def _set(config: Config, **dotted) -> Config:
  for key, value in dotted.items():
    config = config_lib.set_value(config, key.replace('__', '.'), value)
  return config


def world_models(config: Config) -> Config:
  """World Models: the defaults above; 16 env workers, the paper's 100 evaluation trials."""
  return _set(config, run__envs=16, run__eval_envs=16, run__eval_episodes=100)


def car_racing(config: Config) -> Config:
  """CarRacing-v3: trained in the real environment, 1,000-step episodes; every 25 generations
  the search mean is scored on 1,024 real episodes (carracing/train.py: 64 workers x 16)."""
  return _set(config, env__time_limit=1000, agent__evolve__where='real',
              agent__evolve__select_episodes=1024)


def doom(config: Config) -> Config:
  """DoomTakeCover: z 64; M with 512 units, a done head, the restart input, packed episode
  streams of 100 x 500 frames, lr decay 0.99999 per step and 24,400 steps (doomrnn.py,
  rnn_train.py: 400 epochs of ~61 batches over 10,000 episodes); [z, c, h] controller
  inputs; CMA-ES in the dream at tau 1.15."""
  return _set(config, env__time_limit=2100, agent__vae__z_size=64, agent__mdnrnn__hidden=512,
              agent__mdnrnn__predict_done=True, agent__mdnrnn__sequences='packed',
              agent__mdnrnn__seq_len=500, agent__mdnrnn__lr_decay=0.99999,
              agent__mdnrnn__steps=24_400,
              agent__controller__use_cell=True, agent__evolve__where='dream',
              agent__evolve__temperature=1.15)


def paper(config: Config) -> Config:
  return config


def debug(config: Config) -> Config:
  """Tiny sizes for CPU tests: a few short episodes, a few steps of every stage."""
  return _set(config, env__time_limit=30, env__parallel='none', run__envs=2, run__eval_envs=2,
              run__eval_episodes=2, agent__collect__episodes=3,
              agent__vae__batch_size=8, agent__vae__epochs=1, agent__vae__save_every=4,
              agent__mdnrnn__hidden=16, agent__mdnrnn__batch_size=4, agent__mdnrnn__seq_len=8,
              agent__mdnrnn__steps=3, agent__mdnrnn__save_every=2,
              agent__evolve__population=4, agent__evolve__rollouts=2,
              agent__evolve__generations=2, agent__evolve__select_every=1,
              agent__evolve__select_episodes=2, agent__evolve__dream_steps=30)


def suite_for_env(name: str) -> str:
  if name == 'car_racing':
    return 'car_racing'
  if name == 'doom_take_cover':
    return 'doom'
  raise ValueError(f'unknown World Models env; use one of {", ".join(ENVS)}')


def validate(config: Config) -> None:
  agent = config.agent
  if config.env.name not in ENVS:
    raise ValueError(f'env.name: {config.env.name!r} is not a World Models env; use one of '
                     f'{", ".join(ENVS)}')
  if agent.evolve.where not in ('real', 'dream'):
    raise ValueError(f"agent.evolve.where must be 'real' or 'dream', got {agent.evolve.where!r}")
  if agent.evolve.where == 'dream' and not agent.mdnrnn.predict_done:
    raise ValueError('agent.evolve.where=dream needs agent.mdnrnn.predict_done=true '
                     '(the dream reward is survival until the predicted end)')
  if agent.mdnrnn.sequences not in ('windows', 'packed'):
    raise ValueError(f"agent.mdnrnn.sequences must be 'windows' or 'packed', got "
                     f'{agent.mdnrnn.sequences!r}')
  if config.env.parallel not in ('process', 'none'):
    raise ValueError(f"env.parallel must be 'process' or 'none' here, got {config.env.parallel!r}")
  for key in ('collect.episodes', 'vae.batch_size', 'vae.epochs', 'mdnrnn.batch_size',
              'mdnrnn.seq_len', 'evolve.population', 'evolve.rollouts', 'evolve.select_every',
              'evolve.select_episodes', 'evolve.dream_steps'):
    if config_lib.get(agent, key) < 1:
      raise ValueError(f'agent.{key} must be >= 1')
  if agent.evolve.population < 2:
    raise ValueError('agent.evolve.population must be >= 2')
  if config.env.time_limit < 1:
    raise ValueError('env.time_limit must be >= 1 (steps per real episode)')


PRESETS = config_lib.Presets(
    base=Config, algos={'world_models': world_models},
    suites={'car_racing': car_racing, 'doom': doom},
    sizes={'paper': paper, 'debug': debug}, suite_for_env=suite_for_env,
    default_size='paper', default_algo='world_models', validators=(validate,))

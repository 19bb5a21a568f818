"""Typed configuration of Dreamer 4 (Hafner, Yan and Lillicrap 2025, arXiv 2509.24527) and presets.

Paper values carry their section or equation; FIDELITY.md's Dreamer 4 section lists every one
and what was chosen where the paper is silent (it gives no table of optimiser settings, depths,
widths, register counts, imagination horizon or lambda).

The paper's sizes (a 400M tokenizer over 960 patches of 16 x 16, 512 latents x 16 channels,
a 1.6B dynamics model over 192 frames) are far beyond these machines; `small` fits MinAtar's
10 x 10 grids on a CPU and `debug` is for tests.
"""
import dataclasses

from common.envs.config import EnvConfig
from common.replay.host import ReplayConfig
from common.run import config as config_lib
from common.run.config import RunConfig


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  width: int = 128
  layers: int = 4
  heads: int = 4
  kv_heads: int = 2             # grouped-query attention (Sec. 3.4; the ratio is not given)
  temporal_every: int = 4       # a time-attention layer once every 4 layers (Sec. 3.4)
  mlp_ratio: float = 4.0        # SwiGLU hidden units per width (not given)


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  net: TransformerConfig = TransformerConfig()
  patch: int = 5                # patch side in pixels (paper: 16 on 384 x 640 frames)
  latents: int = 8              # latent tokens per frame (paper: 512)
  bottleneck: int = 4           # tanh channels per latent token (paper: 16)
  max_mask: float = 0.9         # MAE: drop probability p ~ U(0, max_mask) per frame (Sec. 3.1)
  lpips: float = 0.2            # weight of the perceptual term (Eq. 5); unused: no LPIPS net here
  length: int = 8               # frames per training window
  batch: int = 16
  lr: float = 1e-3
  steps: int = 2000


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
  net: TransformerConfig = TransformerConfig(layers=8)
  spatial: int = 4              # S_z tokens the latents are packed into (paper: 256)
  registers: int = 2            # S_r learned register tokens per frame (not given)
  k_max: int = 64               # finest step 1 / K_max (inferred from the K=64 baseline, Table 2)
  sample_steps: int = 4         # K = 4 shortcut steps per generated frame (Sec. 3.2)
  context_noise: float = 0.1    # past frames corrupted with 10% noise when generating (Sec. 3.2)
  labelled: float = 1.0         # share of episodes whose actions the model sees (Sec. 3.2)
  length: int = 16              # frames per training window
  batch: int = 16
  lr: float = 1e-3
  steps: int = 2000


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  mtp: int = 8                  # multi-token prediction distances n = 0..L (Eq. 9)
  head_units: int = 128         # the heads' MLP (one hidden layer; output layer per distance)
  finetune_steps: int = 1000    # phase 2: dynamics + BC + reward (+ continue) losses (Eq. 9)
  finetune_lr: float = 1e-3
  imagine_steps: int = 400      # phase 3: policy (Eq. 11) and value (Eq. 10) heads only
  imagine_lr: float = 3e-4
  context: int = 8              # dataset frames each rollout starts from (Sec. 3.3)
  horizon: int = 15             # imagined steps per rollout (not given; DreamerV3's 15)
  batch: int = 16               # rollouts per phase-3 update, one per context (Sec. 3.3)
  discount: float = 0.997       # gamma (Eq. 10)
  lam: float = 0.95             # lambda (not given; DreamerV3's)
  alpha: float = 0.5            # PMPO weight of the positive set (Eq. 11)
  beta: float = 0.3             # PMPO weight of KL(pi || pi_prior) (Eq. 11)
  bins: int = 255               # symexp two-hot bins of reward and value (Sec. 3.3)
  loss_ema: float = 0.99        # decay of the running RMS each loss is divided by (not given)


@dataclasses.dataclass(frozen=True)
class Dreamer4Config:
  tokenizer: TokenizerConfig = TokenizerConfig()
  dynamics: DynamicsConfig = DynamicsConfig()
  agent: AgentConfig = AgentConfig()


@dataclasses.dataclass(frozen=True)
class Config:
  algo: str = 'dreamer4'
  suite: str = ''
  size: str = ''
  run: RunConfig = RunConfig()
  env: EnvConfig = EnvConfig(name='gymnax_Breakout-MinAtar')
  replay: ReplayConfig = ReplayConfig()   # unused: the data is read from run.offline_replay
  agent: Dreamer4Config = Dreamer4Config()


_replace = config_lib.replace


def dreamer4(config: Config) -> Config:
  """Dreamer 4: the defaults above, 16 evaluation envs, 64 evaluation episodes."""
  return _replace(config, **{'run.eval_envs': 16, 'run.eval_episodes': 64})


def gymnax(config: Config) -> Config:
  return config


def small(config: Config) -> Config:
  """MinAtar on a 2-core CPU: width 64, a 4-layer tokenizer and an 8-layer dynamics model."""
  return _replace(config, **{'agent.tokenizer.net': TransformerConfig(width=64, layers=4),
                             'agent.dynamics.net': TransformerConfig(width=64, layers=8)})


def debug(config: Config) -> Config:
  """Tiny sizes for CPU tests: a few steps of every phase."""
  net = TransformerConfig(width=32, layers=2, heads=2, kv_heads=1, temporal_every=2)
  return _replace(config, **{
      'agent.tokenizer.net': net, 'agent.dynamics.net': net, 'agent.tokenizer.latents': 4,
      'agent.tokenizer.length': 4, 'agent.tokenizer.batch': 2, 'agent.tokenizer.steps': 3,
      'agent.dynamics.spatial': 2, 'agent.dynamics.k_max': 4, 'agent.dynamics.length': 6,
      'agent.dynamics.batch': 2, 'agent.dynamics.steps': 3, 'agent.agent.mtp': 2,
      'agent.agent.head_units': 16, 'agent.agent.finetune_steps': 3,
      'agent.agent.imagine_steps': 3, 'agent.agent.context': 3, 'agent.agent.horizon': 3,
      'agent.agent.batch': 2, 'agent.agent.bins': 31, 'run.eval_envs': 2,
      'run.eval_episodes': 2})


def suite_for_env(name: str) -> str:
  if name.startswith('gymnax_'):
    return 'gymnax'
  raise ValueError(f'env: Dreamer 4 here runs on gymnax MinAtar games (gymnax_<Game>-MinAtar); '
                   f'got {name!r}')


def validate(config: Config) -> None:
  agent = config.agent
  if not config.run.offline_replay:
    raise ValueError('Dreamer 4 trains offline: pass --set run.offline_replay=DIR, a replay '
                     'directory written by another run (e.g. runs/dreamerv3/<env>/seed0/replay).')
  for name, net in (('tokenizer', agent.tokenizer.net), ('dynamics', agent.dynamics.net)):
    if net.layers < net.temporal_every:
      raise ValueError(f'agent.{name}.net: layers={net.layers} < temporal_every='
                       f'{net.temporal_every} leaves no time-attention layer.')
  latent_size = agent.tokenizer.latents * agent.tokenizer.bottleneck
  if latent_size % agent.dynamics.spatial:
    raise ValueError(f'agent.dynamics.spatial={agent.dynamics.spatial} must divide the '
                     f'tokenizer latents x bottleneck = {latent_size}.')
  if not 0 < agent.agent.context < agent.dynamics.length:
    raise ValueError(f'agent.agent.context={agent.agent.context} must be in 1..'
                     f'{agent.dynamics.length - 1} (below agent.dynamics.length, the frames a '
                     'frame can read).')
  if not 0 < agent.dynamics.labelled <= 1:
    raise ValueError('agent.dynamics.labelled must be in (0, 1].')


PRESETS = config_lib.Presets(
    base=Config, algos={'dreamer4': dreamer4}, suites={'gymnax': gymnax},
    sizes={'small': small, 'debug': debug}, suite_for_env=suite_for_env,
    default_size='small', default_algo='dreamer4', validators=(validate,))

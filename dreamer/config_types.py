"""The Dreamer agent's configuration: typed, frozen dataclasses with DreamerV3's defaults
(Hafner et al., Nature 2025, Appendix: hyperparameters, and its reference code's). The presets
that change them (algorithm, suite, size) are in `dreamer/configs.py`, which re-exports these.
"""
import dataclasses

from common.envs.config import EnvConfig
from common.nn import kl as kl_lib
from common.nn import optim as optim_lib
from common.nn import rssm as rssm_lib
from common.planning import planners as planning
from common.replay import host as replay_lib
from common.run.config import RunConfig
from dreamer import explore as explore_lib


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  depth: int = 64                 # CNN channels of layer i are depth * mults[i]
  mults: tuple = (2, 3, 4, 4)     # one 2x downsampling stage per entry (64x64 -> 4x4)
  kernel: int = 5                 # CNN kernel size
  padding: str = 'SAME'           # 'SAME' (V3) or 'VALID' (V1/V2 4x4 kernels)
  # 'maxpool' (V3 reference code, enc.simple strided=False): stride-1 conv, 2x2 max pool,
  # norm, act. 'stride' (V1/V2, or a faster V3 option with ~4x fewer encoder conv FLOPs,
  # not the reference architecture): stride-2 convs.
  downsample: str = 'maxpool'
  # Conv weight gradients: 'shift' (common/nn/conv.py: shifted matrix products, ~4x faster on
  # XLA CPU), 'xla', or 'auto' (shift on the CPU backend only). Same values either way.
  conv_grad: str = 'auto'
  mlp_layers: int = 3             # layers of the vector-input MLP
  mlp_units: int = 1024           # units of the vector-input MLP
  act: str = 'silu'
  norm: str = 'rms'
  norm_eps: float = 1e-4          # norm epsilon (V2's Keras LayerNorm: 1e-3)
  winit: str = 'trunc_normal'     # weight init: V3 fan-in truncated normal; V1/V2 Keras glorot_uniform
  symlog_inputs: bool = True      # symlog the vector inputs (V3)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
  depth: int = 64                 # mirrors the encoder
  mults: tuple = (2, 3, 4, 4)
  kernel: int = 5
  padding: str = 'SAME'
  # 'repeat' (V3 reference code, dec.simple strided=False): nearest-neighbour 2x upsampling,
  # then a stride-1 'SAME' conv. 'transpose' (V1/V2, or a faster V3 option with ~4x fewer
  # decoder conv FLOPs, not the reference architecture): stride-2 transposed convs.
  # The speed trade-off for V3: --set agent.encoder.downsample=stride
  # --set agent.decoder.upsample=transpose.
  upsample: str = 'repeat'
  # First layer of the image decoder (V3 code `bspace`, 'SAME' decoders): a block-linear
  # path from deter with this many blocks plus an MLP path from stoch; 0 = one dense layer.
  bspace: int = 8
  conv_grad: str = 'auto'         # as EncoderConfig.conv_grad
  mlp_layers: int = 3
  mlp_units: int = 1024
  act: str = 'silu'
  norm: str = 'rms'
  norm_eps: float = 1e-4          # norm epsilon (V2's Keras LayerNorm: 1e-3)
  winit: str = 'trunc_normal'     # weight init: V3 fan-in truncated normal; V1/V2 Keras glorot_uniform
  image_dist: str = 'mse'         # 'mse' on [0, 1] pixels (V3) or 'normal' (unit variance, V1/V2)
  vector_dist: str = 'symlog_mse'  # 'symlog_mse' (V3), 'mse' or 'normal'
  outscale: float = 1.0           # output layer init scale


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  layers: int = 1                 # hidden layers of the head MLP
  units: int = 1024
  act: str = 'silu'
  norm: str = 'rms'
  norm_eps: float = 1e-4          # norm epsilon (V2's Keras LayerNorm: 1e-3)
  winit: str = 'trunc_normal'     # weight init: V3 fan-in truncated normal; V1/V2 Keras glorot_uniform
  dist: str = 'symexp_twohot'     # 'symexp_twohot', 'mse', 'normal' (unit variance) or 'binary'
  bins: int = 255                 # two-hot bins (symexp spaced in [-20, 20])
  outscale: float = 0.0           # 0 = zero-initialised output layer (V3 reward and critic)


@dataclasses.dataclass(frozen=True)
class ActorConfig:
  layers: int = 3
  units: int = 1024
  act: str = 'silu'
  norm: str = 'rms'
  norm_eps: float = 1e-4          # norm epsilon (V2's Keras LayerNorm: 1e-3)
  winit: str = 'trunc_normal'     # weight init: V3 fan-in truncated normal; V1/V2 Keras glorot_uniform
  outscale: float = 0.01          # small initial output layer (V3)
  unimix: float = 0.01            # uniform mixture of the categorical policy
  continuous_dist: str = 'bounded_normal'  # 'bounded_normal' (V3), 'trunc_normal' (V2), 'tanh_normal' (V1), 'normal'
  min_std: float = 0.1            # std range of the continuous policy
  max_std: float = 1.0
  init_std: float = 5.0           # tanh_normal: std = softplus(raw + softplus^-1(init_std)) + min_std (V1);
                                  # trunc_normal: std = 2 sigmoid((raw + init_std) / 2) + min_std (V2)
  entropy: float = 3e-4           # entropy regulariser (V3, fixed because returns are normalised)
  grad_discrete: str = 'reinforce'    # 'reinforce', 'dynamics' (backprop through the model) or 'both'
  grad_continuous: str = 'reinforce'  # V3: reinforce; V1/V2: 'dynamics'
  grad_mix: float = 0.1           # 'both': weight of the dynamics objective (V2 actor_grad_mix)
  explore_noise: float = 0.0      # V1 (0.3): std of Gaussian noise on continuous train actions,
                                  # epsilon of epsilon-greedy on discrete ones
  eval_sample: bool = True        # 'eval' actions: samples (V3 code) or the mode (V1/V2 code)


@dataclasses.dataclass(frozen=True)
class CriticConfig:
  layers: int = 3
  units: int = 1024
  act: str = 'silu'
  norm: str = 'rms'
  norm_eps: float = 1e-4          # norm epsilon (V2's Keras LayerNorm: 1e-3)
  winit: str = 'trunc_normal'     # weight init: V3 fan-in truncated normal; V1/V2 Keras glorot_uniform
  dist: str = 'symexp_twohot'     # 'symexp_twohot' (V3) or 'mse' (V1/V2 regression)
  bins: int = 255
  outscale: float = 0.0
  slow_rate: float = 0.02         # EMA rate of the slow critic (V3 0.02 every step; V2 1.0 every 100)
  slow_every: int = 1
  slow_regularizer: float = 1.0   # weight of the loss towards the slow critic's prediction (V3)
  slow_target: bool = False       # bootstrap returns from the slow critic (V2) instead of the online one
  replay_loss: bool = True        # V3: also regress the critic on replayed trajectories
  replay_grad: bool = True        # the replay value loss trains the representation too (V3 code)


@dataclasses.dataclass(frozen=True)
class ReturnNormConfig:
  kind: str = 'percentile'        # 'percentile' (V3) or 'none'
  rate: float = 0.01              # EMA rate of the percentile estimates
  limit: float = 1.0              # scale = max(limit, P_high - P_low)
  low: float = 5.0
  high: float = 95.0


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
  encoder: EncoderConfig = EncoderConfig()
  decoder: DecoderConfig = DecoderConfig()
  rssm: rssm_lib.RSSMConfig = rssm_lib.RSSMConfig(
      deter=8192, hidden=1024, stoch=32, classes=64, unimix=0.01, core='block_gru', blocks=8,
      act='silu', norm='rms', initial='zeros')
  reward_head: HeadConfig = HeadConfig()
  continue_head: HeadConfig = HeadConfig(dist='binary', outscale=1.0)
  actor: ActorConfig = ActorConfig()
  critic: CriticConfig = CriticConfig()
  kl: kl_lib.KLConfig = kl_lib.KLConfig(
      mode='split', free=1.0, free_avg=False, dyn_scale=1.0, rep_scale=0.1, scale=1.0)
  retnorm: ReturnNormConfig = ReturnNormConfig()
  # Loss scales (V3: rec 1, rew 1, con 1, policy 1, value 1, repval 0.3; dyn/rep live in `kl`).
  image_scale: float = 1.0
  vector_scale: float = 1.0
  reward_scale: float = 1.0
  continue_scale: float = 1.0
  policy_scale: float = 1.0
  value_scale: float = 1.0
  repval_scale: float = 0.3
  # Temporal straightening (Wang et al.; not in any Dreamer paper): scale of the mean
  # 1 - cos of consecutive velocities of the posterior features, added to the model loss.
  straighten_scale: float = 0.0
  # Imagination.
  imag_horizon: int = 15          # imagined steps from every replayed posterior state
  horizon: float = 333.0          # discount = 1 - 1 / horizon
  lam: float = 0.95               # lambda-return parameter
  continue_discount: bool = True  # V3: continue targets are scaled by the discount (no extra discount)
  predict_continue: bool = True   # continue (discount) head; False (V1, V2 on DMC): cont = 1, no loss
  imag_starts: int = 0            # imagine from the last K steps of each sequence; 0 = all
  imag_skip_last: bool = False    # V1 with a discount head: no start from a sequence's last step
  # Index convention of imagined returns, weights and trained states: each version's
  # reference code ('v3', 'v2', 'v1'; see actor_critic.imagination_targets).
  imag_targets: str = 'v3'
  replay_start_continue: bool = False  # V2: the first imagined discount from replay's is_terminal
  # Replay context (V3 code `replay_context`): windows hold K more steps and start from the
  # posterior latent stored in replay for step K - 1; training writes its latents back.
  replay_context: int = 1
  reward_transform: str = 'none'  # 'none' or 'tanh' (V2 Atari reward clipping)
  # Optimisation: one optimizer over all modules (V3 code) or one per module.
  single_optimizer: bool = True
  model_first: bool = False       # V2 code: update the world model, then imagine with it
  opt: optim_lib.OptimConfig = optim_lib.OptimConfig(
      kind='dreamerv3', lr=4e-5, eps=1e-20, agc=0.3, warmup=1000, momentum=0.9)
  actor_opt: optim_lib.OptimConfig = optim_lib.OptimConfig(
      kind='dreamerv3', lr=4e-5, eps=1e-20, agc=0.3, warmup=1000, momentum=0.9)
  critic_opt: optim_lib.OptimConfig = optim_lib.OptimConfig(
      kind='dreamerv3', lr=4e-5, eps=1e-20, agc=0.3, warmup=1000, momentum=0.9)
  # Acting (issue 21): 'actor' (every Dreamer paper), or plan at every step with a planner
  # of common/planning/planners.py over the world model ('cem', 'mppi', 'gradient'; dreamer/planning.py).
  policy: str = 'actor'
  planner: planning.PlannerConfig = planning.PlannerConfig()
  # Plan2Explore (dreamer/explore.py; `--config plan2explore`): 'none' in every Dreamer paper.
  explore: explore_lib.ExploreConfig = explore_lib.ExploreConfig()
  # Report.
  report_context: int = 5         # open-loop video: observed frames before imagining
  report_sequences: int = 4       # sequences shown side by side in the video


@dataclasses.dataclass(frozen=True)
class Config:
  algo: str = 'dreamerv3'
  suite: str = 'gym'
  size: str = 'size200m'
  run: RunConfig = RunConfig()
  env: EnvConfig = EnvConfig()
  replay: replay_lib.ReplayConfig = replay_lib.ReplayConfig()
  agent: DreamerConfig = DreamerConfig()

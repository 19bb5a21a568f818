"""Environment settings shared by every suite adapter (`common.envs.make`)."""
import dataclasses


@dataclasses.dataclass(frozen=True)
class EnvConfig:
  name: str = 'gym_CartPole-v1'  # suite_task, e.g. atari_pong, dmc_walker_walk, crafter_reward
  action_repeat: int = 1         # agent steps repeat the action this many simulator steps
  size: tuple = (64, 64)         # image height, width
  gray: bool = False             # grayscale images (Atari)
  sticky: bool = False           # Atari: repeat the previous action with probability 0.25
  noops: int = 0                 # Atari: up to this many no-ops at reset
  actions: str = 'all'           # Atari: 'all' (18) or 'needed' (minimal set)
  lives: str = 'unused'          # Atari: 'unused', 'discount' (life loss is terminal) or 'reset'
  time_limit: int = 0            # agent steps per episode; 0 keeps the env's own limit
  pixels: bool = True            # DMC / gym: render `image`
  proprio: bool = True           # DMC / gym: vector observations
  camera: int = -1               # DMC camera id; -1 picks the papers' per-domain camera
  parallel: str = 'process'      # 'process' workers, 'thread', or 'none' (in-process)

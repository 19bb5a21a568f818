"""Typed, frozen configs: preset composition, `--set` overrides, validation, CLI.

Composition order: algorithm preset, environment-suite preset, size preset,
then command-line overrides (`--set section.field=value`, repeatable).
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class RunConfig:
  logdir: str = ''               # run directory; '' picks runs/{algo}/{env}/seed{seed}
  seed: int = 0
  steps: int = 1_000_000         # agent (policy) steps to train for
  envs: int = 1                  # parallel training environments
  eval_envs: int = 1             # parallel evaluation environments
  eval_every: int = 0            # agent steps between evaluations; 0 disables
  eval_episodes: int = 10        # episodes per evaluation (and for --eval_only)
  train_ratio: float = 32.0      # replayed steps per agent step (DreamerV3's definition)
  prefill: int = 1000            # agent steps with random actions before training
  batch_size: int = 16
  batch_length: int = 64
  log_every: float = 60.0        # seconds between metric lines
  report_every: float = 300.0    # seconds between open-loop video reports
  save_every: float = 600.0      # seconds between checkpoints
  keep_checkpoints: int = 3
  precision: str = 'auto'        # 'auto' (bfloat16 on GPU/TPU, float32 on CPU), 'float32', 'bfloat16'
  eval_only: bool = False        # only evaluate the checkpoint in from_checkpoint (or the logdir's)
  from_checkpoint: str = ''      # checkpoint directory to start from
  offline_replay: str = ''       # train only from this replay directory, no env interaction
  max_nonfinite: int = 50        # consecutive skipped non-finite updates that stop the run

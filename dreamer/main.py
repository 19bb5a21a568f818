"""Command line: `python -m dreamer.main --config dreamerv3 --env atari_pong [--size size12m] ...`.

Parses the config (`common.config.parse`: --config, --env, --size, --suite,
--set key=value, --logdir, --seed, --steps, --eval_only, --from_checkpoint),
then runs the shared training loop with the Dreamer agent. Re-running the same
command on a run directory resumes it. Compute is bfloat16 on GPU/TPU and
float32 on CPU (`--set run.precision=float32|bfloat16` to choose).
"""
import os
import sys

from common import config as config_lib
from dreamer import configs

_CACHE = os.path.expanduser('~/.cache/worldmodels_jax/xla')


def _agent_factory(config, obs_space, act_space):
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  try:
    return agent_lib.make_agent(config, obs_space, act_space)
  except ValueError as e:
    raise SystemExit(f'dreamer.main: {e}') from None


def main(argv=None):
  config = config_lib.parse(argv, configs.PRESETS, prog='dreamer.main')
  import jax  # pylint: disable=g-import-not-at-top
  # Compiled train steps are reused across runs (a resumed run starts in seconds).
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', _CACHE)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  from common import train_loop  # pylint: disable=g-import-not-at-top
  try:
    return train_loop.run(_agent_factory, config)
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' in str(e):
      raise SystemExit(
          f'dreamer.main: size {config.size!r} with batch {config.run.batch_size} x '
          f'{config.run.batch_length} does not fit in device memory; pick a smaller --size or '
          '--set run.batch_size=...') from None
    raise


if __name__ == '__main__':
  main(sys.argv[1:])

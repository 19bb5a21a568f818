"""Command line: `python -m planet.main --env dmc_cartpole_swingup [--size debug] [--set ...]`.

PlaNet (Hafner et al., ICML 2019) on the shared training loop. Parses the
config (`common.config.parse`: --config planet, --env, --size default|debug,
--suite, --set key=value, --logdir, --seed, --steps, --eval_only,
--from_checkpoint), then runs `common.train_loop.run` with the PlaNet agent.
Re-running the same command on a run directory resumes it. The paper's
schedule (5 seed episodes, one episode per 100 updates) is expressed through
run.prefill and run.train_ratio; see planet/configs.py.
"""
import os
import sys

from common import config as config_lib
from planet import configs

_CACHE = os.path.expanduser('~/.cache/worldmodels_jax/xla')


def _agent_factory(config, obs_space, act_space):
  from planet import agent as agent_lib  # pylint: disable=g-import-not-at-top
  try:
    return agent_lib.make_agent(config, obs_space, act_space)
  except ValueError as e:
    raise SystemExit(f'planet.main: {e}') from None


def main(argv=None):
  config = config_lib.parse(argv, configs.PRESETS, prog='planet.main')
  import jax  # pylint: disable=g-import-not-at-top
  # Compiled programs are reused across runs (a resumed run starts in seconds).
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', _CACHE)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  from common import train_loop  # pylint: disable=g-import-not-at-top
  return train_loop.run(_agent_factory, config)


if __name__ == '__main__':
  main(sys.argv[1:])

"""Command line: `python -m planet.main --env dmc_cartpole_swingup [--size debug] [--set ...]`.

PlaNet (Hafner et al., ICML 2019) on the shared training loop. Parses the
config (`common.run.config.parse`: --config planet, --env, --size default|debug,
--suite, --set key=value, --logdir, --seed, --steps, --eval_only,
--from_checkpoint), then runs `common.run.train_loop.run` with the PlaNet agent.
Re-running the same command on a run directory resumes it. The paper's
schedule (5 seed episodes, one episode per 100 updates) is expressed through
run.prefill and run.train_ratio; see planet/configs.py.
"""
import sys

from planet import configs


def _make_agent(config, obs_space, act_space):
  from planet import agent as agent_lib  # pylint: disable=g-import-not-at-top
  return agent_lib.make_agent(config, obs_space, act_space)


def main(argv=None):
  from common.run import cli  # pylint: disable=g-import-not-at-top
  return cli.run_main(argv, configs.PRESETS, 'planet.main', _make_agent)


if __name__ == '__main__':
  main(sys.argv[1:])

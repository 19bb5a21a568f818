"""Command line: `python -m dreamer.main --config dreamerv3 --env atari_pong [--size size12m] ...`.

Parses the config (`common.run.config.parse`: --config, --env, --size, --suite,
--set key=value, --logdir, --seed, --steps, --eval_only, --from_checkpoint),
then runs the shared training loop with the Dreamer agent. Re-running the same
command on a run directory resumes it. Compute is bfloat16 on GPU/TPU and
float32 on CPU (`--set run.precision=float32|bfloat16` to choose).
"""
import sys

from dreamer import configs


def _make_agent(config, obs_space, act_space):
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  return agent_lib.make_agent(config, obs_space, act_space)


def main(argv=None):
  from common.run import cli  # pylint: disable=g-import-not-at-top
  return cli.run_main(argv, configs.PRESETS, 'dreamer.main', _make_agent)


if __name__ == '__main__':
  main(sys.argv[1:])

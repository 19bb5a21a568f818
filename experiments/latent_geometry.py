"""Latent geometry of a trained Dreamer or PlaNet run (issue 21, item 3).

  python -m experiments.latent_geometry --logdir RUN [--windows 64] [--length 64] [--seed 0]

Restores the run's latest checkpoint and replay, encodes `--windows` uniformly replayed
windows of `--length` steps with the posterior, and prints one JSON line: for the
deterministic state, the stochastic state and the features, the mean cosine of consecutive
latent velocities (`geometry/cos_*`: 1 is a straight trajectory; 1 - cos is Wang et al.'s
curvature) and the correlation between the latent distance to a state up to 16 steps ahead
and the number of steps (`geometry/dist_step_corr_*`), as every run's report logs them
(`common/geometry.py`). The agent's own `report` computes them, so script and logs agree.
"""
import argparse
import json
import os
import sys

import jax

from common import checkpoint as checkpoint_lib
from common import config as config_lib
from common.replay import Replay


def _algorithm(logdir: str):
  """(agent module, config) of the run, from its config.yaml's algorithm."""
  path = os.path.join(logdir, 'config.yaml')
  if not os.path.exists(path):
    raise SystemExit(f'experiments.latent_geometry: error: no config.yaml in {logdir}; pass a '
                     'run directory of dreamer.main or planet.main.')
  with open(path) as file:
    algo = next((line.split(':', 1)[1].strip() for line in file if line.startswith('algo:')), '')
  if algo == 'planet':
    from planet import agent, configs  # pylint: disable=g-import-not-at-top
  else:
    from dreamer import agent, configs  # pylint: disable=g-import-not-at-top
  return agent, config_lib.load(path, configs.Config)


def measure(logdir: str, windows: int = 64, length: int = 64, seed: int = 0) -> dict:
  agent_module, config = _algorithm(logdir)
  from common import envs  # pylint: disable=g-import-not-at-top
  env = envs.make_env(config.env)
  obs_space, act_space = env.obs_space, env.act_space
  env.close()
  agent = agent_module.make_agent(config, obs_space, act_space)
  directory, step = checkpoint_lib.resolve(os.path.join(logdir, 'checkpoints'))
  checkpointer = checkpoint_lib.Checkpointer(directory)
  target = {'agent': agent.init(jax.random.PRNGKey(0)), 'policy_key': jax.random.PRNGKey(0)}
  try:
    restored, meta = checkpointer.restore(target, step)
  except FileNotFoundError:
    print(f'experiments.latent_geometry: error: no checkpoint in {directory} yet; train longer '
          'or pass another --logdir.', file=sys.stderr)
    raise SystemExit(2) from None
  finally:
    checkpointer.close()
  window = length + agent.replay_context
  replay = Replay(config.replay, None, seed, length=window)
  replay.load(os.path.join(logdir, 'replay'))
  batch = replay.sample(windows, window)
  report = jax.jit(agent.report)(restored['agent'], batch)
  out = {key: round(float(value), 4) for key, value in report.items()
         if key.startswith('geometry/')}
  out.update(logdir=logdir, agent_steps=int(meta.get('agent_steps', 0)),
             updates=int(meta.get('updates', 0)), windows=windows, length=length,
             straighten_scale=float(getattr(config.agent, 'straighten_scale', 0.0)))
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.latent_geometry',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--logdir', required=True)
  parser.add_argument('--windows', type=int, default=64)
  parser.add_argument('--length', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.windows < 1 or args.length < 3:
    parser.error('--windows must be >= 1 and --length >= 3 (curvature needs three steps).')
  result = measure(args.logdir, args.windows, args.length, args.seed)
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main(sys.argv[1:])

"""Latent geometry of a trained Dreamer or PlaNet run (issue 21, item 3).

  python -m experiments.latent_geometry --logdir RUN [--windows 64] [--length 64] [--seed 0]

Restores the run's latest checkpoint and replay, encodes `--windows` uniformly replayed
windows of `--length` steps with the posterior, and prints one JSON line: for the
deterministic state, the stochastic state and the features, the mean cosine of consecutive
latent velocities (`geometry/cos_*`: 1 is a straight trajectory; 1 - cos is Wang et al.'s
curvature) and the correlation between the latent distance to a state up to 16 steps ahead
and the number of steps (`geometry/dist_step_corr_*`), as every run's report logs them
(`common/planning/geometry.py`). The agent's own `report` computes them, so script and logs agree.
"""
import argparse
import json
import os
import sys

import jax

from common.replay.host import Replay
from experiments import run_checkpoint


def measure(logdir: str, windows: int = 64, length: int = 64, seed: int = 0) -> dict:
  run = run_checkpoint.load(logdir, 'experiments.latent_geometry')
  window = length + run.agent.replay_context
  replay = Replay(run.config.replay, None, seed, length=window)
  replay.load(os.path.join(logdir, 'replay'))
  batch = replay.sample(windows, window)
  report = jax.jit(run.agent.report)(run.state, batch)
  out = {key: round(float(value), 4) for key, value in report.items()
         if key.startswith('geometry/')}
  out.update(logdir=logdir, agent_steps=int(run.meta.get('agent_steps', 0)),
             updates=int(run.meta.get('updates', 0)), windows=windows, length=length,
             straighten_scale=float(getattr(run.config.agent, 'straighten_scale', 0.0)))
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

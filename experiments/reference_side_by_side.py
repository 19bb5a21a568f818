"""DreamerV3 learning beside the reference code, at identical settings, on one machine.

    python -m experiments.reference_side_by_side --reference DIR --task dmc_walker_walk \\
        --steps 12000 --seeds 2 --out OUT [--size size1m] [--train_ratio 64] [--envs 4] \\
        [--set key=value ...]

For each seed, runs the reference's `dreamerv3/main.py` (DIR: danijar/dreamerv3 at f8817c4, a
patched temporary copy, as experiments/reference_code.py makes it) and then our
`dreamer.main`, one after the other, each with the same size, train ratio, number of envs,
suite (the reference's `dmc_proprio` preset; action repeat 2 on both, passed to the reference,
whose f8817c4 default is 1), float32 compute on the CPU and seed. Runs live in OUT/reference/seed<k> and OUT/ours/seed<k>; a run whose
directory already holds a finished run is not repeated, and an interrupted one resumes (both
implementations resume from their checkpoints). `--set` goes to ours only (its keys are ours).

Writes OUT/side_by_side.json (per implementation and seed: mean episode return in bins of env
frames, wall time, env frames/s and updates/s) and OUT/side_by_side.png (return against env
frames, each seed thin, the mean thick; updates/s in the legend). Updates are counted the same
way for both, from the steps trained: train_ratio x (agent steps after training starts) /
(batch x length); wall time includes start-up and compilation. The reference writes episodes
only at its log times (every 30 s here), so the episodes of its last seconds can be missing.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

from experiments import plot as plot_lib
from experiments import reference_code

# The reference's config names for the suite of a task prefix (ours infers it from --env).
REFERENCE_SUITES = {'dmc_': 'dmc_proprio'}
# Our DMC action repeat, the published runs' (2411f7d configs.yaml `env.dmc.repeat: 2`). f8817c4
# defaults to 1, so the reference is given it: without it, it steps every frame, trains twice
# as often per episode and logs 1001-step episodes.
ACTION_REPEAT = 2
BATCH, LENGTH = 16, 64     # both agents' batch
TRAIN_STARTS = BATCH * LENGTH   # f8817c4 embodied/run/train.py:70; ours run.train_starts=1024


def reference_command(copy, task, size, seed, steps, train_ratio, envs, logdir):
  suite = next((v for k, v in REFERENCE_SUITES.items() if task.startswith(k)), None)
  if suite is None:
    raise ValueError(f'--task {task}: supported prefixes {sorted(REFERENCE_SUITES)}')
  return [sys.executable, str(copy / 'dreamerv3' / 'main.py'), '--configs', suite, size,
          '--task', task, '--seed', str(seed), '--logdir', logdir,
          '--run.steps', str(steps), '--run.train_ratio', str(train_ratio),
          '--run.envs', str(envs), '--env.dmc.repeat', str(ACTION_REPEAT),
          '--run.save_every', '300', '--run.log_every', '30',
          '--jax.platform', 'cpu', '--jax.compute_dtype', 'float32', '--jax.prealloc', 'False',
          '--logger.outputs', 'jsonl']


def our_command(task, size, seed, steps, train_ratio, envs, logdir, sets):
  command = [sys.executable, '-m', 'dreamer.main', '--config', 'dreamerv3', '--env', task,
             '--suite', 'dmc_proprio', '--size', size, '--seed', str(seed), '--steps', str(steps),
             '--logdir', logdir, '--set', f'run.train_ratio={train_ratio}',
             '--set', f'run.envs={envs}', '--set', 'run.precision=float32',
             '--set', 'run.save_every=300', '--set', 'run.log_every=30']
  for assignment in sets:
    command += ['--set', assignment]
  return command


def episodes(logdir, frames_per_step):
  """[(env frames, score)] from a run's scores.jsonl (the reference logs frames, ours steps)."""
  path = os.path.join(logdir, 'scores.jsonl')
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as file:
    for line in file:
      record = json.loads(line)
      score = record.get('episode/score', record.get('score'))
      if score is not None:
        rows.append((int(record['step']) * frames_per_step, float(score)))
  return rows


def binned(rows, bin_frames, last_frame):
  """Mean return of the episodes ending in each bin of `bin_frames` env frames (None: none)."""
  count = max(1, math.ceil(last_frame / bin_frames))
  curve = plot_lib.bin_curve([f for f, _ in rows], [s for _, s in rows],
                         np.arange(count + 1) * bin_frames, carry=False)
  return [None if np.isnan(v) else float(v) for v in curve]


# The initial actor's action distribution on both sides: mean tanh(0) = 0 and std
# (maxstd - minstd) sigmoid(0 + 2) + minstd with minstd 0.1, maxstd 1 (its output layer starts
# near zero: outscale 0.01), about N(0, 0.893), clipped to [-1, 1] before the env.
INITIAL_STD = 0.9 / (1 + math.exp(-2.0)) + 0.1


def random_policy_returns(task, episodes, seed=0):
  """Returns of `episodes` episodes of `task` (our DMC adapter, repeat 2) under the initial
  actor's distribution without a network: actions N(0, INITIAL_STD) clipped to [-1, 1]."""
  from common import envs  # pylint: disable=g-import-not-at-top
  env = envs.make(task, seed=seed, action_repeat=ACTION_REPEAT)
  rng = np.random.default_rng(seed)
  shape = env.act_space.shape
  returns = []
  while len(returns) < episodes:
    obs, score = env.step(np.zeros(shape, np.float32)), 0.0   # the reset step
    while not obs['is_last']:
      action = np.clip(rng.normal(0.0, INITIAL_STD, shape), -1, 1).astype(np.float32)
      obs = env.step(action)
      score += float(obs['reward'])
    returns.append(score)
  return returns


def run(name, command, logdir, steps):
  """Runs `command` unless `logdir` holds a finished run; returns its wall seconds (None when
  it was finished before)."""
  done = os.path.join(logdir, 'finished.json')
  if os.path.exists(done):
    with open(done) as file:
      return json.load(file)['wall_seconds']
  os.makedirs(logdir, exist_ok=True)
  print(f'{name}: {" ".join(command)}', flush=True)
  start = time.time()
  with open(os.path.join(logdir, 'console.log'), 'a') as log:
    result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, JAX_PLATFORMS='cpu', MUJOCO_GL='egl'))
  wall = time.time() - start
  if result.returncode != 0:
    raise RuntimeError(f'{name} exited {result.returncode}; see {logdir}/console.log')
  with open(done, 'w') as file:
    json.dump({'wall_seconds': wall, 'steps': steps}, file)
  return wall


def plot(report, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axis = plt.subplots(figsize=(7, 4.5))
  for (name, impl), color in zip(report['implementations'].items(), ('tab:gray', 'tab:blue')):
    centres = (np.arange(len(report['bins'])) + 0.5) * report['bin_frames']
    curves = []
    for seed in impl['seeds'].values():
      values = np.array([np.nan if v is None else v for v in seed['returns']], float)
      axis.plot(centres[:len(values)], values, color=color, alpha=0.35, linewidth=1)
      curves.append(values)
    if curves:
      width = min(len(c) for c in curves)
      stacked = np.stack([c[:width] for c in curves])
      seen = ~np.isnan(stacked).all(0)   # bins where no seed ended an episode stay empty
      mean = np.full(width, np.nan)
      mean[seen] = np.nanmean(stacked[:, seen], 0)
      axis.plot(centres[:width], mean, color=color, linewidth=2.5,
                label=f'{name} ({impl["updates_per_second"]:.3g} updates/s)')
  axis.set_xlabel('env frames')
  axis.set_ylabel('episode return')
  axis.set_title(f'{report["task"]}, {report["size"]}, train ratio {report["train_ratio"]}, '
                 f'{report["envs"]} envs')
  axis.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.reference_side_by_side',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--reference', required=True)
  parser.add_argument('--task', default='dmc_walker_walk')
  parser.add_argument('--steps', type=int, default=12000, help='agent steps per run')
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--size', default='size1m')
  parser.add_argument('--train_ratio', type=float, default=64.0)
  parser.add_argument('--envs', type=int, default=4)
  parser.add_argument('--bin_frames', type=int, default=4000)
  parser.add_argument('--out', required=True)
  parser.add_argument('--set', action='append', default=[], help='ours only: key=value')
  parser.add_argument('--random_episodes', type=int, default=0,
                      help='also play this many episodes with the initial actor\'s action '
                      'distribution and no network (the first episodes\' baseline)')
  args = parser.parse_args(argv)
  try:
    copy = reference_code.patched_copy(args.reference)
    commands = {
        'reference': lambda s, d: reference_command(copy, args.task, args.size, s, args.steps,
                                                    args.train_ratio, args.envs, d),
        'ours': lambda s, d: our_command(args.task, args.size, s, args.steps, args.train_ratio,
                                         args.envs, d, args.set)}
    commands['reference'](0, '')   # an unsupported task fails here, before any run
  except (FileNotFoundError, ValueError) as error:
    print(f'reference_side_by_side: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  frames = args.steps * ACTION_REPEAT
  updates = args.train_ratio * max(0, args.steps - TRAIN_STARTS) / (BATCH * LENGTH)
  report = {'task': args.task, 'size': args.size, 'train_ratio': args.train_ratio,
            'envs': args.envs, 'steps': args.steps, 'bin_frames': args.bin_frames,
            'bins': binned([], args.bin_frames, frames), 'implementations': {}}
  for seed in range(args.seeds):
    for name, command in commands.items():
      logdir = os.path.join(os.path.abspath(args.out), name, f'seed{seed}')
      wall = run(f'{name} seed {seed}', command(seed, logdir), logdir, args.steps)
      # The reference logs env frames in scores.jsonl, ours agent steps.
      rows = episodes(logdir, 1 if name == 'reference' else ACTION_REPEAT)
      impl = report['implementations'].setdefault(name, {'seeds': {}})
      impl['seeds'][str(seed)] = {
          'returns': binned(rows, args.bin_frames, frames), 'episodes': len(rows),
          'wall_seconds': wall, 'frames_per_second': frames / wall,
          'updates_per_second': updates / wall}
      impl['updates_per_second'] = float(np.mean(
          [s['updates_per_second'] for s in impl['seeds'].values()]))
      os.makedirs(args.out, exist_ok=True)
      with open(os.path.join(args.out, 'side_by_side.json'), 'w') as file:
        json.dump(report, file, indent=1)
      plot(report, os.path.join(args.out, 'side_by_side.png'))
  if args.random_episodes:
    returns = random_policy_returns(args.task, args.random_episodes)
    report['random_policy'] = {'std': INITIAL_STD, 'episodes': len(returns),
                               'mean': float(np.mean(returns)), 'sd': float(np.std(returns)),
                               'returns': returns}
    with open(os.path.join(args.out, 'side_by_side.json'), 'w') as file:
      json.dump(report, file, indent=1)
  print(f'wrote {args.out}/side_by_side.json and side_by_side.png')


if __name__ == '__main__':
  main()

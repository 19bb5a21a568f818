"""Driver environment steps per second with a random policy (`common.run.driver.Driver`
over `common.envs.make_batch`), optionally beside gymnasium's AsyncVectorEnv.

  python -m experiments.bench_envs                       # atari_pong, dmc_cartpole_swingup; 1, 4, 16 envs
  python -m experiments.bench_envs --envs atari_pong --nums 4 --steps 500 --context spawn
  python -m experiments.bench_envs --compare_gymnasium --repeats 3

Prints a Markdown table: env, number of envs, runner, start-up seconds (until the
first observation), agent steps/s summed over envs (each agent step is
`action_repeat` simulator steps); medians over `--repeats` runs, with the range.
The machine's load average is printed first: on a shared machine, compare rows
measured under similar load only.
"""
import argparse
import os
import time

os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402

from common import envs  # noqa: E402


def random_policy(space, num, seed=0):
  """A host-side policy(obs) -> uniform random actions [num, *space.shape] (vectorised)."""
  rng = np.random.default_rng(seed)
  shape = (num,) + space.shape
  if space.discrete:
    return lambda obs: rng.integers(space.low, space.high.astype(np.int64) + 1, shape).astype(
        space.dtype)
  return lambda obs: rng.uniform(space.low, space.high, shape).astype(space.dtype)


def bench_batch(name, num, steps, mode, context, seed=0):
  from common.run.driver import Driver
  config = envs.suite_config(name, parallel=mode)
  start = time.time()
  batch = envs.make_batch(config, num, seed, **({'context': context} if mode == 'process' else {}))
  driver = Driver(batch)
  driver.num_envs  # Resets, and any lazy set-up (GL contexts).  # pylint: disable=pointless-statement
  startup = time.time() - start
  policy = random_policy(batch.act_space, num, seed)
  driver.run(policy, steps=num)  # Warm-up.
  start = time.time()
  done, _ = driver.run(policy, steps=steps * num)
  rate = done / (time.time() - start)
  batch.close()
  return startup, rate


class _GymnasiumView:
  """One common.envs Env as a gymnasium.Env, for AsyncVectorEnv (same work per step)."""

  def __init__(self, name, seed):
    import gymnasium
    self._env = envs.make(name, seed=seed)
    space = self._env.act_space
    self.action_space = (gymnasium.spaces.Discrete(space.n) if space.discrete else
                         gymnasium.spaces.Box(-1.0, 1.0, space.shape, np.float32))
    image = self._env.obs_space['image']
    self.observation_space = gymnasium.spaces.Box(0, 255, image.shape, np.uint8)
    self.metadata, self.render_mode, self.spec = {}, None, None

  def reset(self, seed=None, options=None):
    return self._env.step(None)['image'], {}

  def step(self, action):
    obs = self._env.step(action)
    return obs['image'], float(obs['reward']), bool(obs['is_terminal']), bool(
        obs['is_last'] and not obs['is_terminal']), {}

  def close(self):
    self._env.close()


def _view(name, seed):
  import gymnasium

  class View(_GymnasiumView, gymnasium.Env):
    pass

  return View(name, seed)


def bench_gymnasium(name, num, steps, context, seed=0):
  import functools
  import gymnasium
  start = time.time()
  vector = gymnasium.vector.AsyncVectorEnv(
      [functools.partial(_view, name, seed + index) for index in range(num)], context=context,
      autoreset_mode=gymnasium.vector.AutoresetMode.NEXT_STEP)
  vector.reset(seed=seed)
  startup = time.time() - start
  vector.step(vector.action_space.sample())  # Warm-up.
  start = time.time()
  for _ in range(steps):
    vector.step(vector.action_space.sample())
  rate = steps * num / (time.time() - start)
  vector.close()
  return startup, rate


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--envs', default='atari_pong,dmc_cartpole_swingup')
  parser.add_argument('--nums', default='1,4,16')
  parser.add_argument('--steps', type=int, default=100, help='batched steps timed per row')
  parser.add_argument('--mode', default='process', choices=envs.parallel.MODES)
  parser.add_argument('--context', default='forkserver',
                      help="'forkserver', 'spawn', or both comma-separated (start-up comparison)")
  parser.add_argument('--compare_gymnasium', action='store_true')
  parser.add_argument('--repeats', type=int, default=1, help='runs per row; the median is shown')
  args = parser.parse_args(argv)
  if args.steps < 1 or args.repeats < 1:
    parser.error(f'--steps {args.steps} and --repeats {args.repeats} must be >= 1.')
  print(f'load average (1, 5, 15 min) at start: {_load()}')
  print('| env | envs | runner | start-up s | steps/s (median) | steps/s range |')
  print('|---|---:|---|---:|---:|---:|')
  contexts = args.context.split(',')
  for name in args.envs.split(','):
    for num in [int(n) for n in args.nums.split(',')]:
      rows = [(f'BatchEnv {args.mode}' + (f' ({context})' if args.mode == 'process' else ''),
               lambda c=context: bench_batch(name, num, args.steps, args.mode, c))
              for context in (contexts if args.mode == 'process' else contexts[:1])]
      if args.compare_gymnasium:
        rows.append((f'gymnasium AsyncVectorEnv ({contexts[0]})',
                     lambda: bench_gymnasium(name, num, args.steps, contexts[0])))
      results = {runner: [] for runner, _ in rows}
      for _ in range(args.repeats):  # Interleaved, so that load changes hit every runner.
        for runner, run in rows:
          results[runner].append(run())
      for runner, values in results.items():
        startups, rates = zip(*values)
        print(f'| {name} | {num} | {runner} | {np.median(startups):.1f} | {np.median(rates):.0f} | '
              f'{min(rates):.0f}-{max(rates):.0f} |', flush=True)
  print(f'load average (1, 5, 15 min) at end: {_load()}')


def _load():
  try:
    return ', '.join(f'{value:.2f}' for value in os.getloadavg())
  except OSError:
    return 'unknown'


if __name__ == '__main__':
  main()

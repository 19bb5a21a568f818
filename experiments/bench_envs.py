"""Environment steps per second with a random policy, through `common.envs.make_batch`.

  python -m experiments.bench_envs                       # atari_pong, dmc_cartpole_swingup; 1, 4, 16 envs
  python -m experiments.bench_envs --envs atari_pong --nums 4 --steps 500 --context spawn
  python -m experiments.bench_envs --compare_gymnasium   # also gymnasium's AsyncVectorEnv

Prints a Markdown table: env, number of envs, mode, start-up seconds, agent steps/s
summed over envs (each agent step is `action_repeat` simulator steps).
"""
import argparse
import os
import time

os.environ.setdefault('MUJOCO_GL', 'egl')

import numpy as np  # noqa: E402

from common import envs  # noqa: E402


def bench_batch(name, num, steps, mode, context, seed=0):
  config = envs.suite_config(name, parallel=mode)
  start = time.time()
  batch = envs.make_batch(config, num, seed, **({'context': context} if mode == 'process' else {}))
  rng = np.random.default_rng(seed)
  sample = lambda: np.stack([batch.act_space.sample(rng) for _ in range(num)])  # noqa: E731
  batch.step(sample())  # Resets, and any lazy set-up (GL contexts).
  startup = time.time() - start
  start = time.time()
  for _ in range(steps):
    batch.step(sample())
  rate = steps * num / (time.time() - start)
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
  parser.add_argument('--context', default='forkserver', choices=['spawn', 'forkserver'])
  parser.add_argument('--compare_gymnasium', action='store_true')
  args = parser.parse_args(argv)
  print('| env | envs | runner | start-up s | steps/s |')
  print('|---|---:|---|---:|---:|')
  for name in args.envs.split(','):
    for num in [int(n) for n in args.nums.split(',')]:
      startup, rate = bench_batch(name, num, args.steps, args.mode, args.context)
      runner = f'BatchEnv {args.mode}' + (f' ({args.context})' if args.mode == 'process' else '')
      print(f'| {name} | {num} | {runner} | {startup:.1f} | {rate:.0f} |', flush=True)
      if args.compare_gymnasium:
        startup, rate = bench_gymnasium(name, num, args.steps, args.context)
        print(f'| {name} | {num} | gymnasium AsyncVectorEnv ({args.context}) | {startup:.1f} | '
              f'{rate:.0f} |', flush=True)


if __name__ == '__main__':
  main()

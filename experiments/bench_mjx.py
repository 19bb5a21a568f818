"""Env steps per second of the MJX tasks in JAX, with and without ray-cast pixels.

  python -m experiments.bench_mjx                                  # cartpole_swingup, walker_walk
  python -m experiments.bench_mjx --tasks cheetah_run --nums 1,16 --steps 50

One jitted program steps N envs (`JaxEnv.step`, vmapped; uniform random actions) `--steps`
times in a `lax.scan`; prints a Markdown table of agent steps/s summed over envs (each agent
step is the suite's 2 control steps) and the compile seconds, proprio only and with 64x64
pixels (`common/envs/mjx_render.py`).
"""
import argparse
import time


def bench(task, num, steps, pixels):
  import jax
  import jax.numpy as jnp
  from common.envs.config import EnvConfig
  from common.envs.mjx import MjxEnv
  env = MjxEnv(task, EnvConfig(name=f'mjx_{task}', action_repeat=2, pixels=pixels))
  shape = (num,) + env.act_space.shape

  def run(state, key):
    def body(state, key):
      action_key, step_key = jax.random.split(key)
      action = jax.random.uniform(action_key, shape, jnp.float32, -1.0, 1.0)
      state, obs = env.step(state, action, jax.random.split(step_key, num))
      # Every observation feeds the output, so the compiler cannot drop the rendering.
      return state, sum(jnp.sum(value.astype(jnp.float32)) for value in obs.values())
    return jax.lax.scan(body, state, jax.random.split(key, steps))

  program = jax.jit(run)
  state = env.initial(jax.random.PRNGKey(0), num)
  start = time.time()
  state, rewards = jax.block_until_ready(program(state, jax.random.PRNGKey(1)))
  compile_s = time.time() - start
  start = time.time()
  jax.block_until_ready(program(state, jax.random.PRNGKey(2)))
  return num * steps / (time.time() - start), compile_s


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--tasks', default='cartpole_swingup,walker_walk')
  parser.add_argument('--nums', default='1,16')
  parser.add_argument('--steps', type=int, default=100, help='agent steps timed per env')
  args = parser.parse_args(argv)
  print('| task | envs | observations | agent steps/s | compile s |')
  print('|---|---|---|---|---|')
  for task in args.tasks.split(','):
    for num in (int(n) for n in args.nums.split(',')):
      for pixels in (False, True):
        speed, compile_s = bench(task, num, args.steps, pixels)
        kind = 'proprio + 64x64 pixels' if pixels else 'proprio'
        print(f'| mjx_{task} | {num} | {kind} | {speed:.0f} | {compile_s:.1f} |', flush=True)


if __name__ == '__main__':
  main()

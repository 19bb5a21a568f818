"""Planning latency of PlaNet's CEM per environment step (paper size).

PlaNet (Hafner et al., ICML 2019): horizon 12, 1000 candidates, top 100, 10
iterations over the paper-size RSSM (deter 200, stoch 30, hidden 200) and the
3 x 300 reward model: 120k latent steps per environment step. Measures the
jitted `policy` (encode + posterior step + CEM) for N parallel envs.

  python -m experiments.bench_planet [--envs 1] [--repeats 5] [--candidates 1000]
"""
import argparse
import json
import time

import jax
import numpy as np

from common.envs.spaces import Space
from common.run import config as config_lib
from planet import agent as agent_lib
from planet import configs


def bench(envs=1, repeats=5, candidates=1000, iterations=10, horizon=12):
  config = config_lib.compose(configs.PRESETS, env='dmc_cartpole_swingup', logdir='/tmp/bench', overrides=[
      f'agent.planner.top_k={min(100, candidates)}', f'agent.planner.candidates={candidates}',
      f'agent.planner.iterations={iterations}', f'agent.planner.horizon={horizon}'])
  agent = agent_lib.make_agent(config, {'image': Space(np.uint8, (64, 64, 3), 0, 255)},
                               Space(np.float32, (1,), -1.0, 1.0))
  state = jax.jit(agent.init)(jax.random.PRNGKey(0))
  policy = jax.jit(agent.policy, static_argnums=4)
  carry = agent.init_policy_carry(envs)
  obs = {'image': np.zeros((envs, 64, 64, 3), np.uint8), 'is_first': np.ones(envs, bool)}
  start = time.time()
  action, carry = policy(state, carry, obs, jax.random.PRNGKey(0), 'train')
  jax.block_until_ready(action)
  compile_s = time.time() - start
  obs['is_first'] = np.zeros(envs, bool)
  times = []
  for i in range(repeats):
    start = time.time()
    action, carry = policy(state, carry, obs, jax.random.PRNGKey(i), 'train')
    jax.block_until_ready(action)
    times.append(time.time() - start)
  return {'backend': jax.default_backend(), 'device': str(jax.devices()[0]), 'envs': envs,
          'horizon': horizon, 'candidates': candidates, 'iterations': iterations,
          'compile_s': round(compile_s, 2), 'step_s_median': round(float(np.median(times)), 4),
          'step_s_min': round(float(np.min(times)), 4)}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.bench_planet')
  parser.add_argument('--envs', type=int, nargs='+', default=[1])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--candidates', type=int, default=1000)
  args = parser.parse_args(argv)
  for envs in args.envs:
    print(json.dumps(bench(envs, args.repeats, args.candidates)), flush=True)


if __name__ == '__main__':
  main()

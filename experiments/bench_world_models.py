"""Controller evaluations per second for World Models, in the real env and in the dream.

  python -m experiments.bench_world_models --env car_racing --workers 2 --episodes 4
  python -m experiments.bench_world_models --env doom_take_cover --dream_population 64

Real: full V + M + C policy (random weights) on `--workers` env processes, episodes of at most
`--time_limit` steps. Dream: `dream.evaluate_population` over population x rollouts episodes of
at most `--dream_steps` steps, with the Doom sizes (z 64, 512 LSTM units, [z, c, h] inputs) and
an untrained MDN-RNN whose done head is switched off, so every episode runs the full length.
Compile time is excluded (one warm-up call each).
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from common.run import config as config_lib
from world_models_ha import c_stages, configs, controller, dream, mdnrnn, models, rollouts, vae


def bench_real(args):
  config = config_lib.compose(configs.PRESETS, env=args.env, overrides=[
      f'env.time_limit={args.time_limit}', f'run.envs={args.workers}',
      f'env.parallel={args.parallel}'])
  vae_model, rnn_model, template = models.build_models(config)
  key = jax.random.PRNGKey(0)
  vae_params = vae.init_params(vae_model, key)
  rnn_params = mdnrnn.init_params(rnn_model, key, controller.action_dim(models.kind_of(config)))
  policy = c_stages.ControllerPolicy(config, vae_model, vae_params, rnn_model, rnn_params,
                                    args.workers, 0)
  candidates = jax.tree.map(
      lambda x: 0.1 * jax.random.normal(key, (args.workers,) + x.shape), template)
  rng = np.random.default_rng(0)
  with rollouts.EnvPool(args.env, args.workers, args.time_limit, args.parallel) as pool:
    c_stages.real_returns(pool, policy, candidates, 1, rng)  # warm-up: compile, env start
    start = time.time()
    _, returns, lengths = c_stages.real_returns(pool, policy, candidates,
                                               max(1, args.episodes // args.workers), rng)
    seconds = time.time() - start
  return {'where': 'real', 'env': args.env, 'workers': args.workers,
          'episodes': len(returns), 'steps': int(lengths.sum()), 'seconds': seconds,
          'episodes_per_second': len(returns) / seconds,
          'steps_per_second': float(lengths.sum()) / seconds}


def bench_dream(args):
  model = mdnrnn.MDNRNN(z_size=64, hidden=args.hidden, predict_done=True, restart_input=True)
  params = mdnrnn.init_params(model, jax.random.PRNGKey(0), action_dim=1)
  params['params']['mdn']['bias'] = params['params']['mdn']['bias'].at[-1].set(-50.0)
  params['params']['mdn']['kernel'] = params['params']['mdn']['kernel'].at[:, -1].set(0.0)
  template = controller.init_params(controller.input_size(64, args.hidden, True), 1, bias=False)
  candidates = jax.tree.map(
      lambda x: 0.1 * jax.random.normal(jax.random.PRNGKey(1), (args.dream_population,) + x.shape),
      template)
  initial = jnp.zeros((16, 64))
  run = jax.jit(lambda key: dream.evaluate_population(
      model, params, candidates, initial, initial, key, rollouts=args.dream_rollouts,
      kind='doom', use_cell=True, temperature=1.15, max_steps=args.dream_steps)[1])
  jax.block_until_ready(run(jax.random.PRNGKey(2)))
  start = time.time()
  returns = jax.block_until_ready(run(jax.random.PRNGKey(3)))
  seconds = time.time() - start
  episodes = returns.size
  return {'where': 'dream', 'population': args.dream_population,
          'rollouts': args.dream_rollouts, 'hidden': args.hidden, 'episodes': int(episodes),
          'steps': int(returns.sum()), 'seconds': seconds,
          'episodes_per_second': episodes / seconds,
          'steps_per_second': float(returns.sum()) / seconds,
          'device': jax.devices()[0].platform}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--env', default='car_racing', choices=sorted(configs.ENVS))
  parser.add_argument('--workers', type=int, default=2)
  parser.add_argument('--parallel', default='process', choices=('process', 'none'))
  parser.add_argument('--episodes', type=int, default=4)
  parser.add_argument('--time_limit', type=int, default=1000)
  parser.add_argument('--dream_population', type=int, default=64)
  parser.add_argument('--dream_rollouts', type=int, default=16)
  parser.add_argument('--dream_steps', type=int, default=100)
  parser.add_argument('--hidden', type=int, default=512)
  parser.add_argument('--skip', choices=('real', 'dream'), default=None)
  args = parser.parse_args(argv)
  results = []
  if args.skip != 'real':
    results.append(bench_real(args))
  if args.skip != 'dream':
    results.append(bench_dream(args))
  for result in results:
    print(json.dumps(result))
  return results


if __name__ == '__main__':
  main()

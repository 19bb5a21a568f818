"""The full training loop against its bare train step (issue 19 item 5).

Runs `common.run.train_loop.run` on a real environment and reports, from the first update to
the end: updates/s, env steps/s, and the share of wall time the device spends in train
steps (updates x the bare step's time / wall time). The bare step is the same jitted
train step timed alone on a batch of the same shapes. Compile time is reported
separately and kept out of both rates.

  python -m experiments.bench_loop --env gym_CartPole-v1 --size size1m --train_ratio 512 \
      --updates 40 [--set run.prefetch=0]
"""
import argparse
import sys
import tempfile
import time

import numpy as np


def _bare_step(config, agent, obs_space, act_space, updates):
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import bench_dreamer  # pylint: disable=g-import-not-at-top
  batch = bench_dreamer.synthetic_batch(agent, obs_space, act_space, config.run.batch_size,
                                        config.run.batch_length + agent.replay_context)
  state = agent.init(jax.random.PRNGKey(0))
  train = jax.jit(agent.train, donate_argnums=0)
  start = time.time()
  compiled = train.lower(state, batch).compile()
  compile_s = time.time() - start
  state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  start = time.time()
  for _ in range(updates):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  return (time.time() - start) / updates, compile_s


def bench(args):
  import jax  # pylint: disable=g-import-not-at-top
  from common import envs as envs_lib  # pylint: disable=g-import-not-at-top
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from common.run import train_loop  # pylint: disable=g-import-not-at-top
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top

  logdir = tempfile.mkdtemp(prefix='bench_loop')
  batch_steps = args.batch * args.length
  # Enough agent steps for `updates` updates after training starts at B x T replay steps.
  # (training starts once B x T window starts exist, a window length or two after B x T steps.)
  steps = batch_steps + 2 * (args.length + 1) + int(np.ceil(args.updates * batch_steps / args.train_ratio)) + 1
  argv = ['--config', 'dreamerv3', '--env', args.env, '--size', args.size, '--logdir', logdir,
          '--steps', str(steps), '--set', f'run.train_ratio={args.train_ratio}',
          '--set', f'run.batch_size={args.batch}', '--set', f'run.batch_length={args.length}',
          '--set', 'run.log_every=0', '--set', 'run.report_every=0', '--set', 'run.save_every=0',
          '--set', f'run.train_starts={batch_steps}', '--set', 'run.prefill=0']
  for item in args.set:
    argv += ['--set', item]
  config = config_lib.parse(argv, configs.PRESETS, prog='experiments.bench_loop')
  env = envs_lib.make_batch(config.env, 1, 0)
  obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
  act_space = env.act_space
  env.close()
  agent = agent_lib.make_agent(config, obs_space, act_space)
  step_s, compile_s = _bare_step(config, agent, obs_space, act_space, args.bare_updates)

  issued = []   # (time, agent step) of each update as the loop issues it
  original = train_loop._Loop.train_step

  def timed_train_step(loop, replay):   # instrumentation only
    issued.append((time.time(), loop.step))
    return original(loop, replay)
  train_loop._Loop.train_step = timed_train_step
  try:
    start = time.time()
    summary = train_loop.run(agent_lib.make_agent, config, stream=open('/dev/null', 'w'))
    end = time.time()
  finally:
    train_loop._Loop.train_step = original
  # From the second update (the first one compiles) to the end of the run.
  updates = len(issued) - 1
  wall = end - issued[1][0]
  env_steps = (summary['step'] - issued[1][1]) * config.run.envs
  device = jax.devices()[0]
  return {
      'env': args.env, 'size': args.size, 'backend': jax.default_backend(),
      'device': device.device_kind, 'devices': len(jax.devices()),
      'train_ratio': args.train_ratio, 'batch': [args.batch, args.length],
      'prefetch': getattr(config.run, 'prefetch', None), 'compile_s': round(compile_s, 2),
      'bare_updates_per_s': round(1 / step_s, 4),
      'loop_updates_per_s': round(updates / wall, 4),
      'loop_vs_bare': round(updates / wall * step_s, 4),
      'env_steps_per_s': round(env_steps / wall, 2),
      'device_busy': round(min(1.0, updates * step_s / wall), 4),
      'updates': updates, 'loop_wall_s': round(end - start, 1),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.bench_loop',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--env', default='gym_CartPole-v1')
  parser.add_argument('--size', default='size1m')
  parser.add_argument('--train_ratio', type=float, default=512.0)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--length', type=int, default=64)
  parser.add_argument('--updates', type=int, default=40, help='updates in the timed loop')
  parser.add_argument('--bare_updates', type=int, default=10)
  parser.add_argument('--set', action='append', default=[], help='config override key=value')
  parser.add_argument('--out', default='', help='append a JSON line to this file')
  args = parser.parse_args(argv)
  from experiments import bench_dreamer  # pylint: disable=g-import-not-at-top
  return bench_dreamer.emit(bench(args), args.out)


if __name__ == '__main__':
  main(sys.argv[1:])

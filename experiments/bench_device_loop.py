"""`--loop device` against `--loop python` on one JAX-native env (issue 20's benchmark).

Each configuration is one `python -m dreamer.main` child (fresh JAX, its own run directory)
with the same env, size, envs, batch and train ratio. Its metric lines give the steady-state
rate: the median `run/steps_per_second` over the lines written while training (the first
such line, which holds the compile, is dropped). Env steps/s count every seed's envs;
updates/s follow from the exact ratio accounting (env steps/s x ratio / (B x T), per seed).

  python -m experiments.bench_device_loop --env gymnax_CartPole-v1 --size size1m \
      --steps 6000 --seeds 1 4 16 [--loops python device] [--out results.jsonl]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(args, loop, seeds):
  logdir = tempfile.mkdtemp(prefix=f'bench_device_loop_{loop}{seeds}_')
  steps = args.python_steps if loop == 'python' and args.python_steps else args.steps
  command = [sys.executable, '-m', 'dreamer.main', '--config', 'dreamerv3', '--env', args.env,
             '--size', args.size, '--logdir', logdir, '--steps', str(steps),
             '--loop', loop, '--set', f'run.envs={args.envs}',
             '--set', f'run.train_ratio={args.train_ratio}',
             '--set', f'run.batch_size={args.batch}', '--set', f'run.batch_length={args.length}',
             '--set', f'run.prefill={args.prefill}', '--set', f'run.log_every={args.log_every}',
             '--set', 'run.report_every=0', '--set', 'run.save_every=0',
             '--set', f'replay.capacity={args.capacity}']
  if seeds > 1:
    command += ['--seeds', str(seeds)]
  if loop == 'device':
    command += ['--set', f'run.chunk={args.chunk}']
  start = time.time()
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  wall = time.time() - start
  if result.returncode:
    raise SystemExit(f'{loop} x{seeds} failed: {result.stderr[-2000:]}')
  metrics_dir = logdir if seeds == 1 else os.path.join(logdir, 'seed0')
  with open(os.path.join(metrics_dir, 'metrics.jsonl')) as file:
    lines = [json.loads(line) for line in file]
  training = [line['run/steps_per_second'] for line in lines
              if line.get('run/updates', 0) > 0 and 'run/steps_per_second' in line]
  steady = training[1:] or training
  per_seed = statistics.median(steady) if steady else float('nan')
  rate = args.train_ratio / (args.batch * args.length)
  return {'env': args.env, 'size': args.size, 'loop': loop, 'seeds': seeds, 'envs': args.envs,
          'train_ratio': args.train_ratio, 'batch': [args.batch, args.length],
          'env_steps_per_s': per_seed * seeds, 'updates_per_s': per_seed * rate * seeds,
          'updates_per_s_per_seed': per_seed * rate, 'wall_s': wall, 'lines': len(steady),
          'updates': lines[-1].get('run/updates')}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.bench_device_loop', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--env', default='gymnax_CartPole-v1')
  parser.add_argument('--size', default='size1m')
  parser.add_argument('--steps', type=int, default=6000, help='agent steps per seed')
  parser.add_argument('--python_steps', type=int, default=0,
                      help='agent steps of the Python loop, when fewer suffice for its rate')
  parser.add_argument('--envs', type=int, default=16)
  parser.add_argument('--train_ratio', type=float, default=32.0)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--length', type=int, default=64)
  parser.add_argument('--prefill', type=int, default=1024)
  parser.add_argument('--capacity', type=int, default=100_000)
  parser.add_argument('--chunk', type=int, default=64, help='device loop iterations per call')
  parser.add_argument('--log_every', type=float, default=5.0)
  parser.add_argument('--seeds', type=int, nargs='+', default=[1, 4, 16])
  parser.add_argument('--loops', nargs='+', default=['python', 'device'],
                      choices=['python', 'device'])
  parser.add_argument('--out', default='')
  args = parser.parse_args(argv)
  results = []
  for loop in args.loops:
    for seeds in (args.seeds if loop == 'device' else [1]):
      result = measure(args, loop, seeds)
      results.append(result)
      print(json.dumps(result), flush=True)
      if args.out:
        with open(args.out, 'a') as file:
          file.write(json.dumps(result) + '\n')
  print('\n| loop | seeds | env steps/s | updates/s (all seeds) | wall s |')
  print('|---|---|---|---|---|')
  for r in results:
    print(f"| {r['loop']} | {r['seeds']} | {r['env_steps_per_s']:.1f} | "
          f"{r['updates_per_s']:.2f} | {r['wall_s']:.0f} |")
  return results


if __name__ == '__main__':
  main()

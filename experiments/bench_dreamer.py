"""DreamerV3 train-step benchmark (issue 4, item 7): updates/s, compile time, memory, FLOPs.

A Crafter-like workload: batch 16 x 64, 64x64x3 images, 17 discrete actions.
For each size it reports the compile time of the jitted train step, its XLA
FLOP count (`jax.jit(...).lower(...).compile().cost_analysis()`), updates per
second over `--updates` timed steps, peak memory (device peak on GPU, process
peak RSS on CPU) and, when the device's peak FLOP/s is known, the achieved
fraction of it.

  python -m experiments.bench_dreamer --sizes size1m size12m --updates 5
  # data parallel over 1, 2 and 4 devices (virtual CPU devices here), speed-up vs the first:
  python -m experiments.bench_dreamer --sizes size1m --scaling 1 2 4
  # the stride-2 / transposed-conv option (not the reference's architecture; faster on CPU):
  python -m experiments.bench_dreamer --sizes size1m \
      --set agent.encoder.downsample=stride --set agent.decoder.upsample=transpose

Reference points: the DreamerV3 reference code counts about 8.8e10 FLOPs per
size1m Crafter step and does ~0.15 updates/s on a 2-core CPU in float32.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
import types

import numpy as np

# Dense bf16 peak FLOP/s of common accelerators (vendor spec sheets).
PEAK_FLOPS = {'H200': 989e12, 'H100': 989e12, 'A100': 312e12, 'L4': 121e12, 'V100': 125e12}


def _peak_flops(device) -> float:
  kind = getattr(device, 'device_kind', '')
  for name, flops in PEAK_FLOPS.items():
    if name in kind:
      return flops
  return 0.0


def synthetic_batch(agent, obs_space, act_space, batch, length, seed=0):
  """Random replay-shaped batch for `agent.train` (episodes start at t=0; V3's replay-context
  latents included), from `common.run.memory.train_batch_spec`."""
  from common.run import memory  # pylint: disable=g-import-not-at-top
  spec = memory.train_batch_spec(agent, obs_space, act_space, batch, length)
  rng = np.random.default_rng(seed)
  out = {}
  for key, value in spec.items():
    if value.dtype == bool:
      out[key] = np.zeros(value.shape, bool)
    elif np.issubdtype(value.dtype, np.integer):
      high = int(getattr(act_space, 'high', 1)) + 1 if key == 'action' else 256
      out[key] = rng.integers(0, high, value.shape).astype(value.dtype)
    else:
      out[key] = rng.normal(size=value.shape).astype(value.dtype)
  out['is_first'][:, 0] = True
  return out


def _xla_flops(config, obs_space, act_space, state, batch):
  """XLA's FLOP count of one train step, from its twin with XLA's conv weight gradients.

  The default CPU weight gradients (common/nn/conv.py) loop over chunks of images in a
  `lax.scan`, whose body XLA's cost analysis counts once; the twin computes the same
  values without that loop, so its count is the step's real work.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  twin_config = config_lib.replace(
      config, **{'agent.encoder.conv_grad': 'xla', 'agent.decoder.conv_grad': 'xla'})
  twin = agent_lib.make_agent(twin_config, obs_space, act_space)
  # Counted on the CPU lowering of shapes alone: the count is the program's, and on the H200
  # (jax 0.11.2) the GPU lowering's cost analysis held no FLOPs (BENCHMARKS.md).
  shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), (state, batch))
  cost = jax.jit(twin.train).trace(*shapes).lower(lowering_platforms=('cpu',)).cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get('flops', float('nan')))


def bench(size, args):
  import jax  # pylint: disable=g-import-not-at-top
  from common.envs.spaces import Space  # pylint: disable=g-import-not-at-top
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top

  argv = ['--config', 'dreamerv3', '--env', 'crafter_reward', '--size', size,
          '--set', f'run.batch_size={args.batch}', '--set', f'run.batch_length={args.length}',
          '--set', f'run.precision={args.precision}', '--logdir', '/tmp/bench_dreamer']
  for item in args.set:
    argv += ['--set', item]
  config = config_lib.parse(argv, configs.PRESETS, prog='experiments.bench_dreamer')
  from common.run import devices as devices_lib  # pylint: disable=g-import-not-at-top
  devices_lib.add_xla_flags(config.run.xla_flags)   # before the first device use
  obs_space = {
      'image': Space(np.uint8, (args.image, args.image, 3)), 'reward': Space(np.float32, ()),
      'is_first': Space(bool, ()), 'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
  act_space = Space(np.int32, (), 0, args.actions - 1)
  agent = agent_lib.make_agent(config, obs_space, act_space)
  state = jax.jit(agent.init)(jax.random.PRNGKey(0))
  params = sum(x.size for x in jax.tree.leaves(state.params))
  batch = synthetic_batch(agent, obs_space, act_space, args.batch,
                          args.length + agent.replay_context)
  if args.train_devices:   # the loop's data parallel step over the first N devices
    placement = devices_lib.Placement(types.SimpleNamespace(
        train_devices=tuple(range(args.train_devices)), policy_devices=(0,),
        batch_size=args.batch))
    state, batch = placement.put_state(state), placement.put_batch(batch)
    train = jax.jit(agent.train, donate_argnums=0, out_shardings=placement.replicated)
  else:
    batch = jax.device_put(batch)
    train = jax.jit(agent.train, donate_argnums=0)

  start = time.time()
  lowered = train.lower(state, batch)
  lower_s = time.time() - start
  start = time.time()
  compiled = lowered.compile()
  compile_s = time.time() - start
  flops = _xla_flops(config, obs_space, act_space, state, batch)

  state, metrics = compiled(state, batch)  # warm-up
  jax.block_until_ready(metrics)
  start, cpu_start = time.time(), time.process_time()
  for _ in range(args.updates):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.time() - start) / args.updates
  cpu_seconds = (time.process_time() - cpu_start) / args.updates

  device = jax.devices()[0]
  result = {
      'size': size, 'backend': jax.default_backend(), 'device': device.device_kind,
      'train_devices': args.train_devices or 1,
      'precision': agent_lib.compute_dtype(config.run.precision), 'params': int(params),
      'batch': [args.batch, args.length], 'image': args.image, 'actions': args.actions,
      'lower_s': round(lower_s, 2), 'compile_s': round(compile_s, 2),
      'flops_per_update': flops, 'seconds_per_update': round(seconds, 4),
      'updates_per_s': round(1.0 / seconds, 4),
      # CPU time of this process per update (all threads): with other jobs on the machine,
      # seconds_per_update grows but this does not.
      'cpu_seconds_per_update': round(cpu_seconds, 3), 'loss': float(metrics['loss']),
      'nonfinite': float(metrics['nonfinite']),
  }
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    result['peak_device_gib'] = round(stats['peak_bytes_in_use'] / 2 ** 30, 3)
  result['peak_rss_gib'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)
  peak = _peak_flops(device)
  if peak and flops == flops:
    result['achieved_flops_per_s'] = flops / seconds
    result['fraction_of_peak'] = round(flops / seconds / peak, 4)
  return result


def emit(result: dict, out: str = '') -> dict:
  """Prints `result` as one JSON line, appended to the file `out` too when given."""
  line = json.dumps(result)
  print(line, flush=True)
  if out:
    with open(out, 'a') as f:
      f.write(line + '\n')
  return result


def _scaling(argv, args):
  """Each size on each device count in a child (the CPU device count is fixed at start)."""
  results = []
  base = _drop_flag(_drop_flag(argv, '--scaling'), '--sizes')
  for size in args.sizes:
    first = None
    for count in args.scaling:
      env = dict(os.environ, XLA_FLAGS=(os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_'
                                        f'platform_device_count={max(args.scaling)}').strip())
      child = [sys.executable, '-m', 'experiments.bench_dreamer'] + base + [
          '--sizes', size, '--train_devices', str(count)]
      out = subprocess.run(child, env=env, capture_output=True, text=True, check=True).stdout
      result = json.loads(out.strip().splitlines()[-1])
      first = first or result
      result['speedup_vs_first'] = round(result['updates_per_s'] / first['updates_per_s'], 3)
      results.append(emit(result, args.out))
  return results


def _drop_flag(argv, flag):
  """argv without `flag` and the values after it (up to the next --option)."""
  out, skip = [], False
  for arg in argv:
    if arg == flag:
      skip = True
    elif skip and arg.startswith('--'):
      skip = False
    if not skip:
      out.append(arg)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.bench_dreamer', description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', nargs='+', default=['size1m', 'size12m'])
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--length', type=int, default=64)
  parser.add_argument('--image', type=int, default=64)
  parser.add_argument('--actions', type=int, default=17)
  parser.add_argument('--updates', type=int, default=5, help='timed updates after one warm-up')
  parser.add_argument('--precision', default='auto', choices=('auto', 'float32', 'bfloat16'))
  parser.add_argument('--set', action='append', default=[], help='config override key=value')
  parser.add_argument('--out', default='', help='append JSON lines to this file')
  parser.add_argument('--train_devices', type=int, default=0,
                      help='data parallel over the first N devices (0: one, unsharded)')
  parser.add_argument('--scaling', type=int, nargs='+', default=[], metavar='N',
                      help='run each size on 1, 2, 4 ... devices, one child process each '
                           '(virtual devices on a CPU), and report the speed-up')
  args = parser.parse_args(argv)
  if args.scaling:
    return _scaling(argv, args)
  results = []
  for size in args.sizes:
    results.append(emit(bench(size, args), args.out))
  return results


if __name__ == '__main__':
  main(sys.argv[1:])

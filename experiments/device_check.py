"""Every accelerator measurement in one budgeted command (issue 19 item 6).

  python -m experiments.device_check --budget 300 --out /tmp/check [--tiny]

Runs, one child process each and in this order, as many as the budget allows, each under
a cap of its own on an accelerator (so a slow compile cannot take the others' time):
  1. the train-step harness (`experiments.bench_dreamer`) at size12m in bfloat16: updates/s,
     compile time, peak memory, FLOP/s against the chip's peak; then at size1m, plain and with
     each of issue 32's levers (`LEVERS`: scans unrolled, XLA's command buffers for loops);
     then the device loop with 1, 4, 8 and 16 vmapped seeds (issue 32 item 2);
  2. `--loop device` against `--loop python` on gymnax CartPole at size1m, the device loop
     with 1 and 16 seeds (`experiments.bench_device_loop`; issue 20's targets);
  3. the harness at size200m (the paper's size) in bfloat16;
  4. PlaNet's planning latency per env step at the paper's planner (`experiments.bench_planet`);
  5. a DreamerV3 `--loop device` run on Craftax-Classic: its Crafter score (geometric mean of
     achievement success rates) against env steps, beside DreamerV3's published Crafter score
     at 1M steps (14.5 +- 1.6%; Crafter is the original that Craftax-Classic reimplements),
     and its env steps/s with the wall time that projects to 1M steps;
  6. `--loop device` against `--loop python` on MuJoCo MJX's cheetah run (DMC locomotion,
     `mjx_cheetah_run`) at size1m, 1 and 16 seeds;
  7. the full loop against its bare step (`experiments.bench_loop`): device busy fraction;
  8. the harness at size1m, size12m and size200m in float32;
  9. a short DreamerV3 learning run on a DMC proprio task at size1m and the published
     schedule (10k agent steps), its last evaluation score beside the published DreamerV3
     curve at that step.
`--only WORD ...` keeps the measurements whose names hold one of the words.
Each child gets what is left of the budget (less a reserve for writing), is killed when it
runs over, and is recorded as done, failed or out of time; `DIR/device_check.json` and
`DIR/device_check.md` are rewritten after every step, so a kill loses only the running one.
`--tiny` runs the same code at debug sizes in about a minute (the CPU dry run in CI).

The published curves are read from `--reference` (default `.whl/reference_scores`, where
`experiments.fetch_wheels` puts the one file this needs, or the shared folder beside the
project).
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import time

import numpy as np

RESERVE_S = 5.0   # kept back from the budget for writing the results
# Issue 32's train-step levers as the harness's --set arguments (tests/dreamer/
# test_speed_levers.py checks that each leaves the losses and gradients as they are).
GPU_GRAPHS = ('run.xla_flags=--xla_gpu_enable_command_buffer=+WHILE '
              '--xla_gpu_command_buffer_unroll_loops=true --xla_gpu_graph_min_graph_size=1')
LEVERS = {'unrolled': ('agent.rssm.unroll=64',), 'graphs': (GPU_GRAPHS,),
          'unrolled+graphs': ('agent.rssm.unroll=64', GPU_GRAPHS)}
LEARNING_TASK = 'dmc_cartpole_balance'
# DreamerV3 (Hafner et al. 2023), Crafter at 1M env steps: score 14.5 +- 1.6 %.
CRAFTER_REFERENCE = {'reference_score': 14.5, 'reference_std': 1.6, 'reference_steps': 1_000_000}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_REFERENCES = (os.path.join(ROOT, '.whl', 'reference_scores'),
                      os.path.join(ROOT, '..', 'shared', 'reference_scores'))


def plan(tiny: bool, logdir: str) -> list:
  """(name, argv, cap in seconds or None) of each measurement, most wanted first.

  A lent GPU gives about 9 minutes of command time once: issue 20's targets (the device loop
  against the Python loop, seeds) and the paper's size in bfloat16 come first, each with a cap
  so a slow compile cannot take the others' time; the float32 harness and the DMC learning run
  last (a second call can run them with `--only`)."""
  python = [sys.executable, '-m']
  if tiny:
    size_args = ['--set', 'agent.rssm.deter=64', '--set', 'agent.rssm.hidden=32',
                 '--set', 'agent.encoder.depth=4', '--set', 'agent.decoder.depth=4',
                 '--batch', '2', '--length', '8', '--image', '16', '--updates', '1']
  else:
    size_args = ['--updates', '10']

  def harness(size, precision, cap, lever=''):
    sets = [a for key in LEVERS.get(lever, ()) for a in ('--set', key)]
    return (f'harness {size} {precision}' + (f' {lever}' if lever else ''), python + [
        'experiments.bench_dreamer', '--sizes', size, '--precision', precision] + size_args
        + sets, cap)

  compare = (['--size', 'debug', '--steps', '200', '--seeds', '1', '2', '--envs', '4',
              '--batch', '4', '--length', '16', '--prefill', '64', '--chunk', '25',
              '--log_every', '1'] if tiny else
             ['--size', 'size1m', '--steps', '30000', '--python_steps', '8000',
              '--seeds', '1', '16', '--log_every', '3'])
  craftax = (['--size', 'debug', '--steps', '200', '--set', 'run.envs=4',
              '--set', 'run.batch_size=4', '--set', 'run.batch_length=16',
              '--set', 'run.prefill=64', '--set', 'env.time_limit=30',
              '--set', 'run.chunk=25'] if tiny else
             # Capacity 1M: a 1M-step run never holds more, so it equals the default 5M,
             # whose pixel replay (76.5 GiB) is over half an H200's memory.
             ['--size', 'size12m', '--steps', '1000000', '--set', 'run.envs=16',
              '--set', 'run.chunk=16', '--set', 'run.save_every=60',
              '--set', 'replay.capacity=1000000'])
  seeds = compare if tiny else ['--size', 'size1m', '--steps', '20000', '--seeds', '1', '4',
                                 '8', '16', '--log_every', '3']
  # MuJoCo MJX's cheetah (DMC locomotion) in the device loop, 1 and 16 seeds.
  mjx = (['--size', 'debug', '--steps', '100', '--seeds', '1', '--envs', '2', '--batch', '2',
          '--length', '8', '--prefill', '32', '--chunk', '25', '--log_every', '1'] if tiny else
         ['--size', 'size1m', '--steps', '8000', '--python_steps', '2000', '--seeds', '1', '16',
          '--log_every', '3'])
  loop = ['--size', 'debug', '--updates', '2', '--batch', '2', '--length', '8',
          '--bare_updates', '1'] if tiny else ['--size', 'size12m', '--updates', '100']
  # 10k agent steps = 20k env frames at action repeat 2; the curves start at 10k frames.
  learning_steps = 200 if tiny else 10_000
  return [
      harness('size12m', 'bfloat16', 100),
      # Issue 32's levers at the latency-bound size, each against the plain size1m.
      harness('size1m', 'bfloat16', 60),
      harness('size1m', 'bfloat16', 60, 'unrolled'),
      harness('size1m', 'bfloat16', 60, 'graphs'),
      harness('size1m', 'bfloat16', 60, 'unrolled+graphs'),
      # Issue 32 item 2: what 4, 8 and 16 vmapped seeds cost against one (targets: 8 seeds
      # <= 2x one seed's time per update, 16 <= 3x).
      ('seeds 1 4 8 16', python + [
          'experiments.bench_device_loop', '--env', 'gymnax_CartPole-v1', '--loops', 'device']
       + seeds, 240),
      ('device loop vs python loop', python + [
          'experiments.bench_device_loop', '--env', 'gymnax_CartPole-v1'] + compare, 300),
      harness('size200m', 'bfloat16', 150),
      ('planet planning latency', python + ['experiments.bench_planet'] + (
          ['--candidates', '10', '--repeats', '1'] if tiny else ['--repeats', '20']), 45),
      ('craftax device loop score', python + [
          'dreamer.main', '--config', 'dreamerv3', '--env', 'craftax_classic', '--loop',
          'device', '--logdir', os.path.join(logdir, 'craftax'),
          '--set', 'run.log_every=30'] + craftax, 150),
      ('mjx device loop vs python loop', python + [
          'experiments.bench_device_loop', '--env', 'mjx_cheetah_run'] + mjx, 180),
      ('full loop vs bare step', python + ['experiments.bench_loop'] + loop, 90),
      harness('size1m', 'float32', 60),
      harness('size12m', 'float32', 90),
      harness('size200m', 'float32', 180),
      ('dreamerv3 learning ' + LEARNING_TASK, python + [
          'dreamer.main', '--config', 'dreamerv3', '--env', LEARNING_TASK, '--suite',
          'dmc_proprio', '--size', 'debug' if tiny else 'size1m', '--steps', str(learning_steps),
          '--logdir', os.path.join(logdir, 'learning'),
          '--set', f'run.eval_every={200 if tiny else 5_000}',
          '--set', f'run.eval_episodes={1 if tiny else 5}'], None),
  ]


def crafter_curve(run_dir: str, points: int = 10) -> dict:
  """Crafter scores (suites.crafter_score over the episodes so far) at `points` env steps of
  a Craftax-Classic run's scores.jsonl, with DreamerV3's published 1M-step Crafter score."""
  from experiments import suites  # pylint: disable=g-import-not-at-top
  path = os.path.join(run_dir, 'scores.jsonl')
  if not os.path.exists(path):
    return {}
  episodes = [json.loads(line) for line in open(path) if line.strip()]
  if not episodes:
    return {}
  names = sorted(key for key in episodes[0] if key.startswith('achievement_'))
  curve = []
  for end in np.unique(np.linspace(1, len(episodes), min(points, len(episodes))).astype(int)):
    seen = episodes[:end]
    rates = [100.0 * np.mean([e[name] > 0 for e in seen]) for name in names]
    curve.append([seen[-1]['step'], round(suites.crafter_score(rates), 2)])
  result = {'crafter_score_curve': curve, 'episodes': len(episodes), **CRAFTER_REFERENCE}
  metrics = os.path.join(run_dir, 'metrics.jsonl')
  if os.path.exists(metrics):
    rates = [line['run/steps_per_second'] for line in map(json.loads, open(metrics))
             if line.get('run/updates', 0) > 0 and 'run/steps_per_second' in line]
    if rates[1:]:   # the first training line holds the compile
      rate = float(np.median(rates[1:]))
      result.update(env_steps_per_s=round(rate, 1),
                    projected_hours_to_1m=round(CRAFTER_REFERENCE['reference_steps'] / rate / 3600, 2))
  return result


def _json_lines(text: str) -> list:
  out = []
  for line in text.splitlines():
    line = line.strip()
    if line.startswith('{') and line.endswith('}'):
      try:
        out.append(json.loads(line))
      except ValueError:
        pass
  return out


def published_runs(task: str, references) -> tuple:
  """(the published DreamerV3 DMC proprio runs of `task` with points, the file) from the first
  of the `references` folders that holds the score file; ([], '') where none does."""
  for folder in references:
    path = os.path.join(folder, 'dmc_proprio-dreamerv3.json.gz')
    if os.path.exists(path):
      return [r for r in json.load(gzip.open(path)) if r['task'] == task and r['xs']], path
  return [], ''


def reference_score(task: str, env_steps: float, references) -> dict:
  """The published DreamerV3 DMC proprio curve at `env_steps`: mean and range over seeds."""
  runs, path = published_runs(task, references)
  values = [float(np.interp(env_steps, r['xs'], r['ys'])) for r in runs]
  if not values:
    return {}
  return {'reference_mean': round(float(np.mean(values)), 1),
          'reference_min': round(min(values), 1), 'reference_max': round(max(values), 1),
          'reference_seeds': len(values), 'reference_file': path}


def _learning_result(logdir: str, references) -> dict:
  path = os.path.join(logdir, 'learning', 'eval_scores.jsonl')
  if not os.path.exists(path):
    return {}
  lines = [json.loads(line) for line in open(path) if line.strip()]
  if not lines:
    return {}
  last_step = max(line['step'] for line in lines)
  scores = [line['score'] for line in lines if line['step'] == last_step]
  # Agent steps x action repeat 2 (dmc_proprio) = env frames, the curves' x axis.
  result = {'agent_step': last_step, 'env_steps': 2 * last_step,
            'score_mean': round(float(np.mean(scores)), 1), 'episodes': len(scores)}
  result.update(reference_score(LEARNING_TASK, 2 * last_step, references))
  return result


def _markdown(report: dict) -> str:
  lines = [f"# Device check ({report['device']}, {report['date']}, commit {report['commit']})",
           '', f"Budget {report['budget_s']} s, used {report['used_s']} s.", '',
           '| step | status | seconds | result |', '|---|---|---|---|']
  for step in report['steps']:
    shown = '; '.join(json.dumps(r, sort_keys=True) for r in step['results'])[:600]
    lines.append(f"| {step['name']} | {step['status']} | {step['seconds']} | {shown} |")
  return '\n'.join(lines) + '\n'


def _write(out: str, report: dict):
  with open(os.path.join(out, 'device_check.json'), 'w') as f:
    json.dump(report, f, indent=1)
  with open(os.path.join(out, 'device_check.md'), 'w') as f:
    f.write(_markdown(report))


def _device() -> str:
  """The device, asked in a child: JAX in this process would take the GPU's memory (it
  preallocates) from the measurements that run after it."""
  code = 'import jax; d = jax.devices()[0]; print(jax.default_backend(), d.device_kind, len(jax.devices()))'
  try:
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120).stdout.strip()
  except subprocess.TimeoutExpired:
    return 'unknown'


def _commit() -> str:
  try:
    return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True,
                          text=True, timeout=10).stdout.strip() or 'unknown'
  except (OSError, subprocess.TimeoutExpired):
    return 'unknown'


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.device_check',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--budget', type=float, required=True, help='seconds for everything')
  parser.add_argument('--out', required=True, help='directory for the results')
  parser.add_argument('--runs', default='',
                      help='directory for the learning runs (default: --out); the device tool '
                           'returns only a few files from its $OUT')
  parser.add_argument('--tiny', action='store_true', help='debug sizes: the CPU dry run')
  parser.add_argument('--only', nargs='+', default=[], metavar='WORD',
                      help='run only the measurements whose names contain one of these')
  parser.add_argument('--reference', action='append', default=[],
                      help='folder with dmc_proprio-dreamerv3.json.gz (repeatable)')
  args = parser.parse_args(argv)
  if args.budget <= RESERVE_S:
    parser.error(f'--budget {args.budget}: must exceed the {RESERVE_S} s kept for writing.')
  start = time.time()
  deadline = start + args.budget - RESERVE_S
  os.makedirs(args.out, exist_ok=True)
  runs = args.runs or args.out
  references = tuple(args.reference) or DEFAULT_REFERENCES
  report = {'device': _device(), 'commit': _commit(), 'date': time.strftime('%Y-%m-%d'),
            'budget_s': args.budget, 'tiny': args.tiny, 'steps': []}
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  steps = [(name, command, cap) for name, command, cap in plan(args.tiny, runs)
           if not args.only or any(word in name for word in args.only)]
  if not steps:
    parser.error(f'--only {" ".join(args.only)}: matches none of '
                 f'{", ".join(name for name, _, _ in plan(args.tiny, runs))}.')
  for name, command, cap in steps:
    left = deadline - time.time()
    if cap and not args.tiny:
      left = min(left, cap)
    step = {'name': name, 'command': ' '.join(command[1:]), 'results': []}
    if left < 1:
      step.update(status='skipped: no budget left', seconds=0)
    else:
      began = time.time()
      try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=left, cwd=ROOT,
                              env=env)
        step['status'] = 'done' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
        step['results'] = _json_lines(proc.stdout)
        if proc.returncode:
          lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines()
                   if line.strip() and not line.startswith(('For simplicity', '-----'))]
          step['error'] = lines[-1:]
      except subprocess.TimeoutExpired as expired:
        out = expired.stdout.decode() if isinstance(expired.stdout, bytes) else expired.stdout
        step['status'] = 'out of time'
        step['results'] = _json_lines(out or '')
      step['seconds'] = round(time.time() - began, 1)
      try:   # a half-written run directory must not cost the steps after it
        if name.startswith('dreamerv3 learning'):
          learned = _learning_result(runs, references)
        elif name.startswith('craftax'):
          learned = crafter_curve(os.path.join(runs, 'craftax'))
        else:
          learned = {}
      except (OSError, ValueError, KeyError) as error:
        learned = {'summary_error': repr(error)}
      if learned:
        step['results'].append(learned)
    report['steps'].append(step)
    report['used_s'] = round(time.time() - start, 1)
    _write(args.out, report)
    print(f"{name}: {step['status']} ({step['seconds']} s)", flush=True)
  report['used_s'] = round(time.time() - start, 1)
  _write(args.out, report)
  return report


if __name__ == '__main__':
  main(sys.argv[1:])

"""One GPU slot's learning curves against the published DreamerV3 curves (issue 32, item 3).

  python -m experiments.gpu_curves --budget 540 --out DIR [--runs RUNS] [--tasks
      mjx_cartpole_swingup mjx_walker_walk] [--seeds 4] [--size size1m] [--tiny]

First, under `HARNESS_S` seconds, the train-step harness (`experiments.bench_dreamer`, bfloat16)
at size1m and size12m, so every slot also measures speed. Then, for each task in turn with an
equal share of the budget left, DreamerV3 under `--loop device` with `--seeds` seeds vmapped
in one program, on a MuJoCo MJX task at the dmc_proprio preset (action repeat 2, train ratio
512) and `--size` (size1m by default: the preset's size12m is for when the train step meets
its targets; the output says which). The run checkpoints every `SAVE_S` seconds and at its
share's end gets SIGTERM (it saves, then stops), so running the same command again resumes.
Run directories and logs go to RUNS/<task> (default DIR; the device tool returns few files,
so keep them out of its output folder there).

`DIR/gpu_curves.json` holds per task and seed the mean episode return in bins of `BIN_FRAMES`
env frames, their mean over seeds, and the published DreamerV3 curve of the same DMC task in
the same bins (mean, min and max over its seeds, read from `--reference`: `.whl/
reference_scores` where `experiments.fetch_wheels` puts it, or the shared folder beside the
project). `DIR/gpu_curves.png` draws each seed thin, their mean thick, over the published
band (where matplotlib is installed, as the GPU image lists it; where it is missing, `python -m
experiments.gpu_curves --plot DIR/gpu_curves.json` draws it afterwards from the JSON). Both
are rewritten every `POLL_S` seconds while a run trains, so a cut-off slot still returns its
curves. The published curves come from dm_control (float64 MuJoCo); MJX simulates
in float32 and drifts from it over long rollouts (FIDELITY.md), as the figure says.

`--tiny` runs the same code at debug size on the CPU (CI runs it); its harness times size1m alone.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from experiments import device_check
from experiments import export
from experiments import plot as plot_lib

BIN_FRAMES = 10_000
ACTION_REPEAT = 2      # the dmc_proprio preset's
HARNESS_S = 60         # the speed harness's share, both sizes together
STEPS = 250_000        # agent steps per seed: dmc_proprio's 500k frames at action repeat 2
SAVE_S = 60            # seconds between the runs' checkpoints
POLL_S = 15            # seconds between rewrites of the curves
STOP_S = 30            # a run's time to save and exit after SIGTERM
TINY_BIN_FRAMES = 100
CAPTION = ('Published DreamerV3 curves (band: min-max over seeds, dashed: mean) come from '
           'dm_control (float64 MuJoCo); ours run on MuJoCo MJX (float32), which drifts from '
           'dm_control over long rollouts.')


def published_task(task: str) -> str:
  """'mjx_walker_walk' -> 'dmc_walker_walk', the name in the published score files."""
  return 'dmc_' + task[len('mjx_'):] if task.startswith('mjx_') else task


def published_curve(task: str, bins: int, bin_frames: int, references) -> dict:
  """The published DreamerV3 DMC proprio curve of `task` at the end of each bin."""
  runs, path = device_check.published_runs(published_task(task), references)
  if not runs:
    return {}
  ends = (np.arange(bins) + 1) * bin_frames
  values = np.array([np.interp(ends, r['xs'], r['ys'], left=np.nan) for r in runs])

  def stat(reduce):
    return [None if np.isnan(col).all() else round(float(reduce(col[~np.isnan(col)])), 1)
            for col in values.T]

  return {'mean': stat(np.mean), 'min': stat(np.min), 'max': stat(np.max),
          'seeds': len(runs), 'file': path}


def seed_curves(run_dir: str, seeds: int, bin_frames: int) -> dict:
  """{seed: [mean return of the episodes ending in each bin, None where none]} from the run's
  per-seed scores (`seed<k>/scores.jsonl` with several seeds, `scores.jsonl` with one), read
  while the run writes them (a partial last line is skipped)."""
  out = {}
  for seed in range(seeds):
    directory = os.path.join(run_dir, f'seed{seed}' if seeds > 1 else '')
    rows = (export.read_scores(directory)
            if os.path.exists(os.path.join(directory, export.SCORES)) else [])
    frames = [int(row['step']) * ACTION_REPEAT for row in rows]
    width = max(frames) // bin_frames + 1 if frames else 0
    curve = plot_lib.bin_curve(frames, [row['score'] for row in rows],
                               np.arange(width + 1) * bin_frames, carry=False)
    out[str(seed)] = [None if np.isnan(v) else round(float(v), 1) for v in curve]
  return out


def _nans(values) -> np.ndarray:
  """None -> NaN, for plotting."""
  return np.array([np.nan if v is None else v for v in values], float)


def task_report(task, run_dir, seeds, bin_frames, references) -> dict:
  curves = seed_curves(run_dir, seeds, bin_frames)
  bins = max((len(c) for c in curves.values()), default=0)
  mean = []
  for b in range(bins):
    values = [c[b] for c in curves.values() if b < len(c) and c[b] is not None]
    mean.append(round(float(np.mean(values)), 1) if values else None)
  return {'published_task': published_task(task), 'seeds': curves, 'mean': mean,
          'frames': bins * bin_frames,
          'published': published_curve(task, bins, bin_frames, references)}


def plot(report: dict, path: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  tasks = report['tasks']
  figure, axes = plt.subplots(1, max(1, len(tasks)), figsize=(5 * max(1, len(tasks)), 4),
                              squeeze=False)
  bin_frames = report['bin_frames']
  for axis, (task, result) in zip(axes[0], tasks.items()):
    published = result.get('published') or {}
    if published:
      x = (np.arange(len(published['mean'])) + 1) * bin_frames
      axis.fill_between(x, _nans(published['min']), _nans(published['max']), color='tab:gray',
                        alpha=0.25, label=f'published ({published["seeds"]} seeds)')
      axis.plot(x, _nans(published['mean']), color='tab:gray', linestyle='--')
    for k, curve in enumerate(result['seeds'].values()):
      x = (np.arange(len(curve)) + 1) * bin_frames
      axis.plot(x, _nans(curve), color='tab:blue', alpha=0.35,
                linewidth=1, label='ours, each seed' if k == 0 else None)
    if result['mean']:
      x = (np.arange(len(result['mean'])) + 1) * bin_frames
      axis.plot(x, _nans(result['mean']), color='tab:blue',
                linewidth=2.5, label='ours, mean')
    axis.set_title(f'{task} ({report["size"]}, {report["seeds"]} seeds)')
    axis.set_xlabel('env frames')
    axis.set_ylabel('episode return')
    axis.legend(fontsize=8)
  figure.text(0.01, 0.01, CAPTION, fontsize=7, wrap=True)
  figure.tight_layout(rect=(0, 0.06, 1, 1))
  figure.savefig(path, dpi=110)
  plt.close(figure)


def write(out: str, report: dict):
  """The JSON, and the PNG where matplotlib is installed (elsewhere `--plot DIR/gpu_curves.json`
  draws it afterwards)."""
  with open(os.path.join(out, 'gpu_curves.json'), 'w') as file:
    json.dump(report, file, indent=1)
  try:
    plot(report, os.path.join(out, 'gpu_curves.png'))
  except ImportError:
    pass


def harness_command(tiny: bool) -> list:
  """Both sizes in one process (JAX starts once); each prints its JSON line when done. The
  tiny run times size1m alone: its CPU compile takes most of a minute."""
  small = ['--set', 'agent.rssm.deter=64', '--set', 'agent.rssm.hidden=32',
           '--set', 'agent.encoder.depth=4', '--set', 'agent.decoder.depth=4',
           '--batch', '2', '--length', '8', '--image', '16', '--updates', '1']
  sizes = ['size1m'] if tiny else ['size1m', 'size12m']
  return [sys.executable, '-m', 'experiments.bench_dreamer', '--sizes', *sizes,
          '--precision', 'bfloat16'] + (small if tiny else ['--updates', '10'])


def harness_budget(tiny: bool, budget: float) -> float:
  """HARNESS_S of the slot's budget at most; the tiny run on a busy CPU gets a quarter of its
  budget, so that its one size finishes."""
  return budget / 4 if tiny else min(HARNESS_S, budget / 4)


def run_command(task, seeds, size, logdir, tiny) -> list:
  command = [sys.executable, '-m', 'dreamer.main', '--config', 'dreamerv3', '--env', task,
             '--suite', 'dmc_proprio', '--loop', 'device', '--seeds', str(seeds),
             '--size', 'debug' if tiny else size, '--logdir', logdir,
             '--set', f'run.save_every={SAVE_S}', '--set', 'run.log_every=30']
  if tiny:
    command += ['--steps', '150', '--set', 'run.envs=2', '--set', 'run.batch_size=2',
                '--set', 'run.batch_length=8', '--set', 'run.prefill=32',
                '--set', 'run.chunk=25', '--set', 'run.train_ratio=32',
                '--set', 'env.time_limit=25']
  else:
    # The preset's 500k frames; the budget stops it sooner. The replay never holds more than
    # the run's steps, so its capacity is that: the preset's 5M steps per seed would preallocate
    # 20-22 GiB of device memory for 4 seeds (and more than half of a CPU's memory in a dry run).
    command += ['--steps', str(STEPS), '--set', f'replay.capacity={STEPS}']
  return command


def train_task(command, deadline, on_poll) -> str:
  """Runs `command` until it ends or `deadline` (SIGTERM, then STOP_S to save); calls
  `on_poll()` every POLL_S seconds. Returns 'done', 'out of time' or 'failed (exit N)'."""
  with open(os.path.join(command[command.index('--logdir') + 1] + '.log'), 'a') as log:
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    status = None
    while child.poll() is None:
      if time.time() >= deadline:
        child.send_signal(signal.SIGTERM)
        try:
          child.wait(STOP_S)
        except subprocess.TimeoutExpired:
          child.kill()
          child.wait()
        status = 'out of time'
        break
      time.sleep(min(POLL_S, max(0.1, deadline - time.time())))
      on_poll()
  on_poll()
  if status:
    return status
  return 'done' if child.returncode == 0 else f'failed (exit {child.returncode})'


def run_harness(command, budget_s) -> dict:
  """The harness's JSON lines, those of the sizes it finished when it ran out of time."""
  try:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=budget_s)
    output = proc.stdout
    status = 'done' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
  except subprocess.TimeoutExpired as stopped:
    output = stopped.stdout or ''
    output = output.decode() if isinstance(output, bytes) else output
    status = 'out of time'
  return {'command': ' '.join(command[2:]), 'status': status, 'budget_s': round(budget_s, 1),
          'results': device_check._json_lines(output)}   # pylint: disable=protected-access


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.gpu_curves',
                                   description=__doc__.split('\n\n')[0])
  if argv is None:
    argv = sys.argv[1:]
  if argv[:1] == ['--plot']:   # python -m experiments.gpu_curves --plot DIR/gpu_curves.json
    with open(argv[1]) as file:
      plot(json.load(file), os.path.join(os.path.dirname(argv[1]), 'gpu_curves.png'))
    return
  parser.add_argument('--budget', type=float, required=True, help='seconds for everything')
  parser.add_argument('--out', required=True)
  parser.add_argument('--runs', help='run directories (default: --out)')
  parser.add_argument('--tasks', nargs='+', default=['mjx_cartpole_swingup', 'mjx_walker_walk'])
  parser.add_argument('--seeds', type=int, default=4)
  parser.add_argument('--size', default='size1m')
  parser.add_argument('--tiny', action='store_true', help='debug size on the CPU (CI)')
  parser.add_argument('--reference', nargs='*', default=list(device_check.DEFAULT_REFERENCES),
                      help='folders holding dmc_proprio-dreamerv3.json.gz')
  args = parser.parse_args(argv)
  bad = [t for t in args.tasks if not t.startswith('mjx_')]
  if bad or args.seeds < 1 or args.budget <= 0:
    print('gpu_curves: error: ' + (f'--tasks {" ".join(bad)}: use MJX tasks '
                                   '(mjx_<domain>_<task>, e.g. mjx_walker_walk)' if bad else
                                   '--seeds and --budget must be positive'), file=sys.stderr)
    raise SystemExit(2)
  start = time.time()
  os.makedirs(args.out, exist_ok=True)
  os.makedirs(args.runs or args.out, exist_ok=True)
  bin_frames = TINY_BIN_FRAMES if args.tiny else BIN_FRAMES
  report = {'device': device_check._device(), 'commit': device_check._commit(),   # pylint: disable=protected-access
            'date': time.strftime('%Y-%m-%d'), 'budget_s': args.budget,
            'size': 'debug' if args.tiny else args.size, 'seeds': args.seeds,
            'bin_frames': bin_frames, 'caption': CAPTION,
            'size_note': ('the dmc_proprio preset trains size12m; this slot uses '
                          f'{args.size} until the train step meets its targets (issue 32)'
                          if args.size != 'size12m' and not args.tiny else ''),
            'harness': {}, 'tasks': {}, 'status': {}}
  write(args.out, report)
  report['harness'] = run_harness(harness_command(args.tiny),
                                  harness_budget(args.tiny, args.budget))
  write(args.out, report)
  for index, task in enumerate(args.tasks):
    left = args.budget - (time.time() - start) - STOP_S
    deadline = time.time() + left / (len(args.tasks) - index)
    run_dir = os.path.join(args.runs or args.out, task)

    def poll(task=task, run_dir=run_dir):
      report['tasks'][task] = task_report(task, run_dir, args.seeds, bin_frames, args.reference)
      report['used_s'] = round(time.time() - start, 1)
      write(args.out, report)

    command = run_command(task, args.seeds, args.size, run_dir, args.tiny)
    report['status'][task] = train_task(command, deadline, poll)
    write(args.out, report)
  for task, result in report['tasks'].items():
    print(f'{task}: {report["status"][task]}, {result["frames"]:,} env frames per seed, '
          f'last mean return {next((v for v in reversed(result["mean"]) if v is not None), None)}')
  print(f'wrote {args.out}/gpu_curves.json and gpu_curves.png in {time.time() - start:.0f} s')


if __name__ == '__main__':
  main()

"""Sweeps: one run directory per (algorithm, task, seed), in a local process pool or on Ray.

  python -m experiments.sweep --algos dreamerv3,dreamerv2,planet --suite dmc_proprio --seeds 3 \
      [--tasks dmc_walker_walk,...] [--steps N] [--size debug] [--set key=value ...] \
      [--jobs N] [--logdir ROOT] [--dry_run] [--backend local|ray --address ADDR]

Runs go to ROOT/{suite}/{algo}/{task}/seed{seed} (`sweep.json` there records the
job and its command, `sweep.log` its output). A run is done when its command
exited with status 0 having reached its step budget; the sweep then writes a
`done` file, and later invocations skip the run. Anything else (killed, failed,
interrupted by a signal) is started again with the same command, which resumes
from the run's checkpoint. Exit status: 0 when every run is done, 1 when some
failed or stopped short, 2 for bad arguments.

The budget: `--steps` (agent steps) when given; else, for the Dreamer family,
the suite's budget (`suites.Suite.steps`); PlaNet and World Models keep their
presets' schedules (PlaNet's action repeat differs per task).
"""
import argparse
import concurrent.futures
import dataclasses
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import Optional

from experiments import suites

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DONE = 'done'


@dataclasses.dataclass(frozen=True)
class Algo:
  module: str                 # entry point, run as `python -m module`
  flags: tuple = ()           # flags naming the algorithm to the entry point
  suites: Optional[tuple] = None  # suites it can run (None: all but world_models)
  suite_flag: bool = True     # pass `--suite` (the entry point knows the suite presets)
  budget: bool = True         # pass the suite's budget as --steps when --steps is not given


# The suite names an entry point knows, where they differ from ours.
_SUITE_FLAG = {'atari57': 'atari'}

ALGOS = {
    'dreamerv1': Algo('dreamer.main', ('--config', 'dreamerv1')),
    'dreamerv2': Algo('dreamer.main', ('--config', 'dreamerv2')),
    'dreamerv3': Algo('dreamer.main', ('--config', 'dreamerv3')),
    'plan2explore': Algo('dreamer.main', ('--config', 'plan2explore')),
    'planet': Algo('planet.main', (), suites=('dmc_vision',), suite_flag=False, budget=False),
    'world_models': Algo('world_models_ha.main', (), suites=('world_models',),
                         suite_flag=False, budget=False),
}


@dataclasses.dataclass(frozen=True)
class Job:
  algo: str
  suite: str
  task: str
  seed: int
  logdir: str
  command: tuple

  def describe(self) -> str:
    return f'{self.algo} {self.task} seed {self.seed}'


class UsageError(ValueError):
  """Bad command-line input (exit status 2)."""


def parse_list(text: str, what: str) -> list:
  items = [item.strip() for item in text.split(',') if item.strip()]
  if not items:
    raise UsageError(f'{what}: empty list; give comma-separated names.')
  return items


def parse_seeds(text: str) -> list:
  """'3' -> [0, 1, 2]; '0,4,7' -> [0, 4, 7]."""
  try:
    if ',' in text:
      seeds = [int(item) for item in parse_list(text, '--seeds')]
    else:
      count = int(text)
      if count < 1:
        raise ValueError
      seeds = list(range(count))
  except ValueError:
    raise UsageError(f"--seeds: '{text}' is neither a positive count nor a comma-separated "
                     'list of seeds.') from None
  if len(set(seeds)) != len(seeds):
    raise UsageError(f'--seeds: {text} repeats a seed.')
  return seeds


def build_jobs(algos, suite_name, seeds, root, tasks=None, steps=None, size=None,
               overrides=(), python=None) -> list:
  """Every (algo, task, seed) job of a sweep, in algo-major order."""
  try:
    suite = suites.get(suite_name)
    tasks = suites.check_tasks(suite, tasks) if tasks else suite.tasks
  except ValueError as error:
    raise UsageError(str(error)) from None
  for algo in algos:
    if algo not in ALGOS:
      raise UsageError(f"--algos: unknown algorithm '{algo}'; use one of {', '.join(ALGOS)}.")
    allowed = ALGOS[algo].suites
    if allowed is None:
      allowed = tuple(name for name in suites.SUITES if name != 'world_models')
    if suite.name not in allowed:
      raise UsageError(f'--algos: {algo} does not run suite {suite.name} (it runs: '
                       f'{", ".join(allowed)}).')
  if steps is not None and steps < 1:
    raise UsageError(f'--steps: must be a positive number of agent steps, got {steps}.')
  for override in overrides:
    if '=' not in override:
      raise UsageError(f"--set: '{override}' is not key=value.")
  python = python or sys.executable
  jobs = []
  for algo in algos:
    spec = ALGOS[algo]
    for task in tasks:
      for seed in seeds:
        logdir = os.path.join(root, suite.name, algo, task, f'seed{seed}')
        command = [python, '-m', spec.module, *spec.flags, '--env', suite.env_name(task)]
        if spec.suite_flag:
          command += ['--suite', _SUITE_FLAG.get(suite.name, suite.name)]
        if size:
          command += ['--size', size]
        budget = steps if steps is not None else (suite.steps if spec.budget else 0)
        if budget:
          command += ['--steps', str(budget)]
        command += ['--seed', str(seed), '--logdir', logdir]
        for override in overrides:
          command += ['--set', override]
        jobs.append(Job(algo, suite.name, task, seed, logdir, tuple(command)))
  return jobs


# ------------------------------------------------------------------ done


def _budget(logdir: str) -> Optional[int]:
  """run.steps of the run's config.yaml (None when there is none)."""
  import yaml
  path = os.path.join(logdir, 'config.yaml')
  try:
    with open(path) as file:
      config = yaml.safe_load(file) or {}
    return int(config['run']['steps'])
  except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
    return None


def progress(logdir: str) -> Optional[int]:
  """Agent steps a run has reached: its latest checkpoint step, else its last episode's step."""
  steps = []
  checkpoints = os.path.join(logdir, 'checkpoints')
  if os.path.isdir(checkpoints):
    steps += [int(name) for name in os.listdir(checkpoints) if name.isdigit()]
  if steps:
    return max(steps)
  scores = os.path.join(logdir, 'scores.jsonl')
  if os.path.exists(scores):
    last = None
    with open(scores) as file:
      for line in file:
        try:
          last = int(json.loads(line)['step'])
        except (ValueError, KeyError, TypeError):
          pass
    return last
  return None


def reached_budget(logdir: str) -> bool:
  """Whether the run reached run.steps (True when its progress cannot be measured)."""
  budget, reached = _budget(logdir), progress(logdir)
  if budget is None or reached is None:
    return True
  return reached >= budget


def is_done(logdir: str) -> bool:
  """A run is done when the sweep wrote its `done` file (exit 0 and budget reached)."""
  return os.path.isfile(os.path.join(logdir, DONE))


def execute(job: Job, env: Optional[dict] = None) -> dict:
  """Runs one job to completion (skips a done one); returns {'status', 'rc', 'seconds'}.

  status: 'skipped', 'done', 'failed' (non-zero exit) or 'incomplete' (exit 0 short of the
  budget, e.g. stopped by a signal; the next sweep resumes it).
  """
  if is_done(job.logdir):
    return {'status': 'skipped', 'rc': 0, 'seconds': 0.0}
  os.makedirs(job.logdir, exist_ok=True)
  meta = {'algo': job.algo, 'suite': job.suite, 'task': job.task, 'seed': job.seed,
          'command': list(job.command), 'started': time.time()}
  with open(os.path.join(job.logdir, 'sweep.json'), 'w') as file:
    json.dump(meta, file, indent=1)
  start = time.time()
  child_env = dict(os.environ if env is None else env)
  # The entry points import the repository's packages from any working directory.
  child_env['PYTHONPATH'] = os.pathsep.join(
      [REPO] + [p for p in child_env.get('PYTHONPATH', '').split(os.pathsep) if p])
  with open(os.path.join(job.logdir, 'sweep.log'), 'a') as log:
    log.write(f'\n$ {shlex.join(job.command)}\n')
    log.flush()
    rc = subprocess.call(list(job.command), stdout=log, stderr=subprocess.STDOUT,
                         env=child_env, cwd=REPO)
  seconds = time.time() - start
  if rc != 0:
    status = 'failed'
  elif not reached_budget(job.logdir):
    status = 'incomplete'
  else:
    status = 'done'
    with open(os.path.join(job.logdir, DONE), 'w') as file:
      json.dump({'rc': rc, 'seconds': seconds, 'steps': progress(job.logdir),
                 'finished': time.time()}, file)
  return {'status': status, 'rc': rc, 'seconds': seconds}


# ------------------------------------------------------------------ backends


def visible_gpus() -> list:
  """GPU ids from CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`; [] without GPUs."""
  listed = os.environ.get('CUDA_VISIBLE_DEVICES')
  if listed is not None:
    return [item for item in listed.split(',') if item.strip() and item.strip() != '-1']
  if not shutil.which('nvidia-smi'):
    return []
  try:
    output = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True,
                            timeout=10).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(index) for index, line in enumerate(output.splitlines()) if line.startswith('GPU')]


def default_jobs(gpus=None) -> int:
  """Parallel runs that fit the machine: one per GPU, else one per 2 cores and 4 GB free."""
  gpus = visible_gpus() if gpus is None else gpus
  if gpus:
    return len(gpus)
  cores = os.cpu_count() or 1
  try:
    import psutil
    memory_jobs = int(psutil.virtual_memory().available // (4 * 2 ** 30))
  except ImportError:
    memory_jobs = cores
  return max(1, min(cores // 2, memory_jobs))


def _report(index, total, job, result, stream):
  print(f'[{index}/{total}] {result["status"]:<10} {job.describe():<40} '
        f'{result["seconds"]:7.1f}s  {job.logdir}', file=stream, flush=True)


def run_local(jobs, parallel: int, stream=None) -> list:
  """Runs jobs in a pool of `parallel` worker threads, each waiting on one subprocess.

  With GPUs, each worker slot is pinned to one GPU through CUDA_VISIBLE_DEVICES.
  """
  stream = stream or sys.stdout
  gpus = visible_gpus()
  slots = queue.Queue()
  for slot in range(parallel):
    slots.put(slot)
  lock = threading.Lock()
  counter = [0]

  def work(job):
    slot = slots.get()
    try:
      env = dict(os.environ)
      if gpus:
        env['CUDA_VISIBLE_DEVICES'] = gpus[slot % len(gpus)]
      result = execute(job, env)
    finally:
      slots.put(slot)
    with lock:
      counter[0] += 1
      _report(counter[0], len(jobs), job, result, stream)
    return result

  with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
    return list(pool.map(work, jobs))


def run_ray(jobs, address: Optional[str], gpus_per_job: float = 0.0, cpus_per_job: float = 1.0,
            stream=None) -> list:
  """Runs jobs as Ray tasks (`pip install -e .[ray]`); the run directories must be on a
  filesystem every node shares."""
  try:
    import ray
  except ImportError:
    raise UsageError('--backend ray needs Ray: pip install -e .[ray]') from None
  stream = stream or sys.stdout
  started = not ray.is_initialized()
  if started:
    ray.init(address=address or None, runtime_env={'env_vars': {'PYTHONPATH': REPO}},
             log_to_driver=False)
  remote = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(execute)
  try:
    pending = {remote.remote(job): job for job in jobs}
    results = {}
    while pending:
      ready, _ = ray.wait(list(pending), num_returns=1)
      job = pending.pop(ready[0])
      try:
        result = ray.get(ready[0])
      except Exception as error:  # the task itself crashed (node lost, ...)
        result = {'status': 'failed', 'rc': -1, 'seconds': 0.0, 'error': str(error)}
      results[job] = result
      _report(len(results), len(jobs), job, result, stream)
  finally:
    if started:
      ray.shutdown()
  return [results[job] for job in jobs]


# ------------------------------------------------------------------ command line


def make_parser():
  parser = argparse.ArgumentParser(
      prog='python -m experiments.sweep',
      description='Run every (algorithm, task, seed) of a suite as its own run directory.')
  parser.add_argument('--algos', required=True, help=f'comma-separated: {", ".join(ALGOS)}')
  parser.add_argument('--suite', required=True, help=f'one of {", ".join(suites.SUITES)}')
  parser.add_argument('--seeds', default='1', help='a count (3 -> seeds 0,1,2) or a list 0,4,7')
  parser.add_argument('--tasks', default=None, help='comma-separated subset of the suite\'s tasks')
  parser.add_argument('--steps', type=int, default=None, help='agent steps per run')
  parser.add_argument('--size', default=None, help='model size preset passed to every run')
  parser.add_argument('--set', action='append', default=[], dest='overrides',
                      metavar='KEY=VALUE', help='config override passed to every run (repeatable)')
  parser.add_argument('--jobs', type=int, default=None, help='parallel runs (default: fit the machine)')
  parser.add_argument('--logdir', default='runs', help='root of the run directories')
  parser.add_argument('--dry_run', action='store_true', help='print the commands, run nothing')
  parser.add_argument('--backend', default='local', choices=('local', 'ray'))
  parser.add_argument('--address', default=None, help='Ray cluster address (default: start a local one)')
  parser.add_argument('--gpus_per_job', type=float, default=0.0, help='Ray: GPUs per run')
  parser.add_argument('--cpus_per_job', type=float, default=1.0, help='Ray: CPUs per run')
  return parser


def main(argv=None, stream=None) -> int:
  parser = make_parser()
  args = parser.parse_args(argv)
  try:
    algos = parse_list(args.algos, '--algos')
    tasks = parse_list(args.tasks, '--tasks') if args.tasks is not None else None
    seeds = parse_seeds(args.seeds)
    if args.jobs is not None and args.jobs < 1:
      raise UsageError(f'--jobs: must be >= 1, got {args.jobs}.')
    if args.address and args.backend != 'ray':
      raise UsageError('--address: only meaningful with --backend ray.')
    jobs = build_jobs(algos, args.suite, seeds, os.path.abspath(args.logdir), tasks=tasks,
                      steps=args.steps, size=args.size, overrides=args.overrides)
  except UsageError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  if args.dry_run:
    for job in jobs:
      mark = '# done: ' if is_done(job.logdir) else ''
      print(mark + shlex.join(job.command), file=stream)
    return 0
  todo = sum(not is_done(job.logdir) for job in jobs)
  print(f'{len(jobs)} runs, {len(jobs) - todo} already done.', file=stream, flush=True)
  try:
    if args.backend == 'ray':
      results = run_ray(jobs, args.address, args.gpus_per_job, args.cpus_per_job, stream)
    else:
      results = run_local(jobs, args.jobs or default_jobs(), stream)
  except UsageError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  counts = {}
  for result in results:
    counts[result['status']] = counts.get(result['status'], 0) + 1
  print('Sweep: ' + ', '.join(f'{count} {status}' for status, count in sorted(counts.items())),
        file=stream)
  unfinished = [(job, result['status']) for job, result in zip(jobs, results)
                if result['status'] in ('failed', 'incomplete')]
  for job, status in unfinished:
    print(f'{status}: {job.describe()}; see {os.path.join(job.logdir, "sweep.log")} (run the '
          'same command to resume)', file=stream)
  return 1 if unfinished else 0


if __name__ == '__main__':
  sys.exit(main())

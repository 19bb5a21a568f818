"""Run directories -> the published score-file format (DreamerV3's reference results).

A score file is a gzipped JSON list of records, one per (task, method, seed):

  {"task": "atari_pong", "method": "dreamerv3", "seed": 0,
   "xs": [frames or agent steps at each episode end], "ys": [episode scores]}

A run directory (see DESIGN.md) holds `config.yaml` (algo, env.name,
env.action_repeat, run.seed) and `scores.jsonl` (one line per finished training
episode: step, score, length). The sweep also writes `sweep.json` with the
algo, suite, task and seed it launched; it takes precedence over config.yaml.

  python -m experiments.export --runs ROOT --out scores.json.gz [--x frames|steps] [--method NAME]
"""
import argparse
import gzip
import json
import math
import os
import sys

import yaml

from experiments import suites

SCORES = 'scores.jsonl'
X_UNITS = ('frames', 'steps')


class RunError(ValueError):
  """A run directory or score file that cannot be read; the message names the file."""


def find_runs(root: str) -> list:
  """Run directories under `root` (itself included): those holding a scores.jsonl, sorted."""
  if not os.path.isdir(root):
    raise RunError(f"--runs: '{root}' is not a directory.")
  runs = []
  for directory, subdirs, files in os.walk(root):
    # Checkpoints and replay chunks never hold runs; skip them to keep the walk cheap.
    subdirs[:] = sorted(d for d in subdirs if d not in ('checkpoints', 'replay'))
    if SCORES in files:
      # A multi-host run's other hosts log under hosts/<process>/ (common/run/host_sync.host_dir):
      # one run, not more seeds.
      subdirs[:] = [d for d in subdirs if d != 'hosts']
      runs.append(directory)
  return sorted(runs)


def read_scores(run_dir: str, filename: str = SCORES) -> list:
  """The episode records of a run (dicts with at least step and score), in file order.

  A truncated last line (a run killed mid-write) is skipped; any other bad line is an error.
  """
  path = os.path.join(run_dir, filename)
  if not os.path.exists(path):
    raise RunError(f'{path}: no such file; is {run_dir} a run directory?')
  records = []
  with open(path) as file:
    lines = file.read().split('\n')
  for index, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      if index == len(lines) - 1:
        continue  # partial last line
      raise RunError(f'{path}:{index + 1}: not a JSON line.') from None
    if not isinstance(record, dict) or 'step' not in record or 'score' not in record:
      raise RunError(f'{path}:{index + 1}: expected an object with step and score.')
    records.append(record)
  return records


def run_info(run_dir: str) -> dict:
  """algo, task (score-file name), env, seed, action_repeat and suite of a run directory."""
  info = {}
  config_path = os.path.join(run_dir, 'config.yaml')
  if os.path.exists(config_path):
    try:
      with open(config_path) as file:
        config = yaml.safe_load(file) or {}
    except yaml.YAMLError as error:
      raise RunError(f'{config_path}: not valid YAML ({error.__class__.__name__}).') from None
    env = config.get('env') or {}
    run = config.get('run') or {}
    info.update(algo=config.get('algo'), env=env.get('name'), seed=run.get('seed'),
                action_repeat=env.get('action_repeat'), suite=config.get('suite'),
                steps=run.get('steps'))
  sweep_path = os.path.join(run_dir, 'sweep.json')
  if os.path.exists(sweep_path):
    with open(sweep_path) as file:
      sweep = json.load(file)
    info.update({key: sweep[key] for key in ('algo', 'seed', 'suite', 'task') if key in sweep})
    info.setdefault('env', sweep.get('env'))
  if info.get('env') and not info.get('task'):
    info['task'] = suites.canonical_task(info['env'])
  missing = [key for key in ('algo', 'task', 'seed') if info.get(key) is None]
  if missing:
    raise RunError(f'{run_dir}: cannot tell the run\'s {", ".join(missing)} (no config.yaml '
                   'or sweep.json naming them); pass --method/--task or fix the run directory.')
  info['action_repeat'] = int(info.get('action_repeat') or 1)
  return info


def export_run(run_dir: str, x: str = 'frames', method: str = None, task: str = None,
               filename: str = SCORES) -> dict:
  """One score-file record from a run: xs = step * action_repeat (frames) or step (steps)."""
  if x not in X_UNITS:
    raise ValueError(f"x={x!r}: use one of {', '.join(X_UNITS)}.")
  try:
    info = run_info(run_dir)
  except RunError:
    if method is None or task is None:
      raise
    info = {'algo': method, 'task': task, 'seed': 0, 'action_repeat': 1}
  scale = info['action_repeat'] if x == 'frames' else 1
  records = read_scores(run_dir, filename)
  return {
      'task': task or info['task'],
      'method': method or info['algo'],
      'seed': info['seed'],
      'xs': [int(record['step']) * scale for record in records],
      'ys': [float(record['score']) for record in records],
  }


def save(records: list, path: str) -> None:
  """Writes records as a gzipped JSON list (the published format)."""
  check_records(records, path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  with gzip.open(path, 'wt') as file:
    json.dump(records, file)


def load(path: str) -> list:
  """Records from a score file (gzipped or plain JSON list), validated."""
  if not os.path.isfile(path):
    raise RunError(f"{path}: no such score file.")
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rt') as file:
      records = json.load(file)
  except (OSError, json.JSONDecodeError, EOFError) as error:
    raise RunError(f'{path}: not a (gzipped) JSON score file ({error.__class__.__name__}).') \
        from None
  check_records(records, path)
  return records


def load_dir(path: str) -> list:
  """Records of a score file, or of every *.json.gz / *.json file in a directory."""
  if os.path.isdir(path):
    names = sorted(name for name in os.listdir(path)
                   if name.endswith('.json.gz') or name.endswith('.json'))
    if not names:
      raise RunError(f'{path}: no *.json.gz score files in this directory.')
    return [record for name in names for record in load(os.path.join(path, name))]
  return load(path)


def check_records(records, path='records') -> None:
  if not isinstance(records, list):
    raise RunError(f'{path}: expected a JSON list of records, got {type(records).__name__}.')
  for index, record in enumerate(records):
    if not isinstance(record, dict):
      raise RunError(f'{path}: record {index} is not an object.')
    missing = [key for key in ('task', 'method', 'seed', 'xs', 'ys') if key not in record]
    if missing:
      raise RunError(f'{path}: record {index} lacks {", ".join(missing)}.')
    if len(record['xs']) != len(record['ys']):
      raise RunError(f'{path}: record {index} ({record["task"]}, {record["method"]}) has '
                     f'{len(record["xs"])} xs but {len(record["ys"])} ys.')


def clean(xs, ys):
  """Drops points whose y is None or NaN (published files hold a few)."""
  pairs = [(float(x), float(y)) for x, y in zip(xs, ys)
           if y is not None and not (isinstance(y, float) and math.isnan(y))]
  return [x for x, _ in pairs], [y for _, y in pairs]


def export(root: str, out: str, x: str = 'frames', method: str = None) -> list:
  """Exports every run under `root` to one score file at `out`; returns the records."""
  runs = find_runs(root)
  if not runs:
    raise RunError(f'{root}: no run directories (none holds a {SCORES}).')
  records = [export_run(run, x=x, method=method) for run in runs]
  save(records, out)
  return records


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.export',
      description='Convert run directories to a gzipped JSON score file.')
  parser.add_argument('--runs', required=True, help='a run directory or a tree of them')
  parser.add_argument('--out', required=True, help='output path, e.g. scores.json.gz')
  parser.add_argument('--x', default='frames', choices=X_UNITS,
                      help='xs in env frames (step * action_repeat) or agent steps')
  parser.add_argument('--method', default=None, help='method name (default: the run\'s algo)')
  args = parser.parse_args(argv)
  try:
    records = export(args.runs, args.out, x=args.x, method=args.method)
  except RunError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  print(f'Wrote {len(records)} records to {args.out}.')
  return 0


if __name__ == '__main__':
  sys.exit(main())

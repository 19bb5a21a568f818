"""Learning curves, final-score tables and suite aggregates, ours beside published results.

  python -m experiments.plot --runs DIR [--reference FILE_OR_DIR ...] --out DIR \
      [--suite NAME] [--baselines baselines.yaml] [--bins 30] [--budget FRAMES]

Writes to --out:
  curves.png       one panel per task: mean over seeds and a 95% bootstrap band, binned on a
                   common x axis (env frames), one line per method; reference methods dashed.
  aggregates.png   mean, median and IQM across tasks with 95% stratified-bootstrap CIs
                   (Agarwal et al. 2021, rliable), human-normalised for Atari.
  scores.md        final score per task and method (mean +- std over seeds), reference
                   methods beside ours, then the aggregates.
  final_scores.json  the per-seed final scores behind the table.

The final score of a seed follows the suite's protocol (`experiments.suites`): the mean of
the episodes that end in the last `final_window` frames (up to `--budget`).
"""
import argparse
import collections
import functools
import json
import math
import os
import sys

import numpy as np

from experiments import export as export_lib
from experiments import suites

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BASELINES = os.path.join(os.path.dirname(REPO), 'shared', 'reference_scores',
                                 'baselines.yaml')
REFERENCE_SUFFIX = ' (ref)'
METRICS = ('mean', 'median', 'iqm')
_SUITE_ALIASES = {'atari': 'atari57'}  # suite names in the algorithms' configs -> ours


class PlotError(ValueError):
  """Bad input to the plotter (exit status 2)."""


# ------------------------------------------------------------------ curves


def bin_curve(xs, ys, edges, carry=True) -> np.ndarray:
  """Mean of the ys in each bin [edges[i], edges[i+1]); [len(edges) - 1]; points past the
  last edge count in the last bin.

  Empty bins between two filled ones carry the last value forward (`carry=False`: they stay
  NaN); bins before the first point or after the last are NaN (a seed says nothing where it
  did not run).
  """
  xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
  num = len(edges) - 1
  result = np.full(num, np.nan)
  if xs.size == 0:
    return result
  index = np.clip(np.searchsorted(edges, xs, side='right') - 1, 0, num - 1)
  sums = np.bincount(index, weights=ys, minlength=num)
  counts = np.bincount(index, minlength=num)
  filled = counts > 0
  result[filled] = sums[filled] / counts[filled]
  if not carry:
    return result
  first, last = np.flatnonzero(filled)[[0, -1]]
  for i in range(first + 1, last + 1):
    if np.isnan(result[i]):
      result[i] = result[i - 1]
  return result


def band(curves, reps=1000, ci=0.95, seed=0):
  """Mean over seeds and a bootstrap CI of that mean per bin; curves [S, N] with NaNs.

  Returns (mean, low, high), each [N]; with one seed, low = high = mean.
  """
  curves = np.asarray(curves, np.float64)
  with np.errstate(all='ignore'):
    import warnings
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', RuntimeWarning)
      mean = np.nanmean(curves, axis=0)
      if curves.shape[0] < 2:
        return mean, mean.copy(), mean.copy()
      rng = np.random.default_rng(seed)
      index = rng.integers(curves.shape[0], size=(reps, curves.shape[0]))
      samples = np.nanmean(curves[index], axis=1)  # [reps, N]
      low = np.nanpercentile(samples, 100 * (1 - ci) / 2, axis=0)
      high = np.nanpercentile(samples, 100 * (1 + ci) / 2, axis=0)
  return mean, low, high


# ------------------------------------------------------------------ scores


def final_score(xs, ys, window, end=None) -> float:
  """Mean of the ys with end - window <= x <= end (end: the budget, or the last x).

  Falls back to the last y at or before `end` when no point lies in the window; NaN when
  the record has no point at or before `end`.
  """
  xs, ys = export_lib.clean(xs, ys)
  xs, ys = np.asarray(xs), np.asarray(ys)
  if end is not None:
    keep = xs <= end
    xs, ys = xs[keep], ys[keep]
  if xs.size == 0:
    return float('nan')
  stop = xs.max() if end is None else min(end, xs.max())
  inside = xs >= stop - window
  return float(ys[inside].mean()) if inside.any() else float(ys[np.argmax(xs)])


def load_baselines(path, section) -> dict:
  """task -> (random, human) from a baselines YAML section (e.g. atari57_gamer)."""
  import yaml
  if not os.path.isfile(path):
    raise PlotError(f"--baselines: '{path}' does not exist; pass the baselines.yaml with "
                    'random and human scores per task.')
  with open(path) as file:
    data = yaml.safe_load(file) or {}
  if section not in data:
    raise PlotError(f"--baselines: '{path}' has no section '{section}' (sections: "
                    f"{', '.join(data)}).")
  table = {}
  for task, pair in data[section].items():
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
      raise PlotError(f'{path}: {section}.{task} must be [random, human].')
    table[task] = (float(pair[0]), float(pair[1]))
  return table


def normalise(task, score, baselines) -> float:
  """Human-normalised score (Mnih et al. 2015): (score - random) / (human - random)."""
  if task not in baselines:
    raise PlotError(f"no random/human baseline for task '{task}' in the baselines file.")
  random, human = baselines[task]
  return (score - random) / (human - random)


def _metric_fn(metric):
  from rliable import metrics as rly
  return {'mean': rly.aggregate_mean, 'median': rly.aggregate_median,
          'iqm': rly.aggregate_iqm}[metric]


def _vector_metric(samples, metric):
  """The aggregate of each bootstrap sample; samples [reps, R, T] -> [reps]."""
  import scipy.stats
  if metric == 'mean':
    return samples.mean(axis=(1, 2))
  if metric == 'median':
    return np.median(samples.mean(axis=1), axis=1)
  return scipy.stats.trim_mean(samples.reshape(samples.shape[0], -1), 0.25, axis=1)


def aggregate(matrix, reps=2000, ci=0.95, seed=0) -> dict:
  """Mean, median (of per-task means) and IQM (Agarwal et al. 2021) with bootstrap CIs.

  matrix: [R, T] scores, R runs (seeds) of T tasks. CIs come from the stratified bootstrap
  (runs resampled within each task, rliable's procedure) written in NumPy: rliable's own
  bootstrap goes through `arch`, whose releases break on current pandas (7.x) or reject
  rliable's arguments (8.x). Point estimates are rliable's. Returns {metric: (point, low, high)}.
  """
  matrix = np.asarray(matrix, np.float64)
  if matrix.ndim != 2 or matrix.size == 0:
    raise PlotError(f'aggregate: expected a non-empty [runs, tasks] matrix, got shape '
                    f'{matrix.shape}.')
  result = {}
  rng = np.random.default_rng(seed)
  runs, tasks = matrix.shape
  index = rng.integers(runs, size=(reps, runs, tasks))
  samples = matrix[index, np.arange(tasks)[None, None, :]]
  for metric in METRICS:
    values = _vector_metric(samples, metric)
    low, high = np.percentile(values, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    result[metric] = (float(_metric_fn(metric)(matrix)), float(low), float(high))
  return result


# ------------------------------------------------------------------ gathering


def gather(runs_dir, references=(), suite_name=None, budget=None, baselines_path=None,
           tasks=None):
  """Reads our runs and the reference files; returns a dict the writers below use."""
  try:
    run_dirs = export_lib.find_runs(runs_dir)
  except export_lib.RunError as error:
    raise PlotError(str(error)) from None
  if not run_dirs:
    raise PlotError(f"--runs: no run directories under '{runs_dir}' (none holds a scores.jsonl).")
  ours, run_suites = [], set()
  for run_dir in run_dirs:
    try:
      ours.append(export_lib.export_run(run_dir, x='frames'))
      run_suites.add(export_lib.run_info(run_dir).get('suite'))
    except export_lib.RunError as error:
      raise PlotError(str(error)) from None
  reference = []
  for path in references:
    try:
      reference += export_lib.load_dir(path)
    except export_lib.RunError as error:
      raise PlotError(f'--reference: {error}') from None
  our_tasks = sorted({record['task'] for record in ours})
  tasks = list(tasks) if tasks else our_tasks
  # The suite: the flag, else the one our runs were launched with, else inferred from tasks.
  suite = None
  if suite_name:
    try:
      suite = suites.get(suite_name)
    except ValueError as error:
      raise PlotError(f'--suite: {error}') from None
  else:
    named = {_SUITE_ALIASES.get(name, name) for name in run_suites}
    if len(named) == 1 and next(iter(named)) in suites.SUITES:
      suite = suites.SUITES[next(iter(named))]
    else:
      suite = suites.suite_of_tasks(tasks)
  if budget is None and suite is not None and suite.protocol.budget:
    budget = suite.protocol.budget
  baselines = None
  if suite is not None and suite.protocol.normalise == 'human':
    path = baselines_path or DEFAULT_BASELINES
    if os.path.isfile(path) or baselines_path:
      baselines = load_baselines(path, suite.protocol.baselines)
    else:
      print(f'warning: no baselines file at {path}; aggregates use raw scores '
            '(pass --baselines).', file=sys.stderr)
  methods = collections.OrderedDict()
  for record in ours:
    methods.setdefault(record['method'], []).append(record)
  for record in reference:
    if record['task'] in tasks:
      methods.setdefault(record['method'] + REFERENCE_SUFFIX, []).append(record)
  return {'methods': methods, 'tasks': tasks, 'suite': suite, 'budget': budget,
          'baselines': baselines}


def final_scores(data) -> dict:
  """method -> task -> {seed: final score} under the suite's protocol (or 10% windows)."""
  suite, budget = data['suite'], data['budget']
  table = {}
  for method, records in data['methods'].items():
    per_task = table.setdefault(method, {})
    for record in records:
      if record['task'] not in data['tasks']:
        continue
      xs, _ = export_lib.clean(record['xs'], record['ys'])
      if not xs:
        continue
      if suite is not None and suite.protocol.final_window:
        window = suite.protocol.final_window
      else:
        window = 0.1 * min(budget or max(xs), max(xs))
      score = final_score(record['xs'], record['ys'], window, budget)
      if not math.isnan(score):
        per_task.setdefault(record['task'], {})[str(record['seed'])] = score
  return table


def aggregates(data, scores, reps=2000, seed=0):
  """method -> {metric: (point, low, high)} over the tasks every method has; and those tasks."""
  methods = [method for method in scores if scores[method]]
  if not methods:
    return {}, []
  common = [task for task in data['tasks'] if all(task in scores[m] for m in methods)]
  baselines = data['baselines']
  if baselines is not None:
    common = [task for task in common if task in baselines]
  if not common:
    return {}, []
  result = {}
  for method in methods:
    runs = min(len(scores[method][task]) for task in common)
    columns = []
    for task in common:
      values = [scores[method][task][key] for key in sorted(scores[method][task])][:runs]
      if baselines is not None:
        values = [normalise(task, value, baselines) for value in values]
      columns.append(values)
    result[method] = aggregate(np.array(columns).T, reps=reps, seed=seed)
  return result, common


# ------------------------------------------------------------------ writers


def _colors(methods):
  import matplotlib
  palette = matplotlib.colormaps['tab10'].colors
  bases = []
  for method in methods:
    base = method[:-len(REFERENCE_SUFFIX)] if method.endswith(REFERENCE_SUFFIX) else method
    if base not in bases:
      bases.append(base)
  colors = {}
  for method in methods:
    base = method[:-len(REFERENCE_SUFFIX)] if method.endswith(REFERENCE_SUFFIX) else method
    index = bases.index(base)
    # A reference with our method's name gets the next colour so both stay distinguishable.
    shift = 1 if method.endswith(REFERENCE_SUFFIX) and base in methods else 0
    colors[method] = palette[(index * 2 + shift) % len(palette)]
  return colors


def plot_curves(data, path, bins=30, reps=500):
  """The per-task grid of learning curves (PNG at `path`)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  tasks = data['tasks']
  methods = list(data['methods'])
  colors = _colors(methods)
  cols = min(4, len(tasks))
  rows = math.ceil(len(tasks) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
  for axis, task in zip(axes.flat, tasks):
    records = {m: [r for r in data['methods'][m] if r['task'] == task] for m in methods}
    xmax = data['budget'] or max(
        (max(r['xs']) for rs in records.values() for r in rs if r['xs']), default=1)
    edges = np.linspace(0, xmax, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    for method, method_records in records.items():
      if not method_records:
        continue
      curves = np.stack([bin_curve(*export_lib.clean(r['xs'], r['ys']), edges)
                         for r in method_records])
      mean, low, high = band(curves, reps=reps)
      style = '--' if method.endswith(REFERENCE_SUFFIX) else '-'
      axis.plot(centers, mean, style, color=colors[method],
                label=f'{method} ({len(method_records)})')
      axis.fill_between(centers, low, high, color=colors[method], alpha=0.2, linewidth=0)
    axis.set_title(task, fontsize=10)
    axis.set_xlabel('env frames')
    axis.set_ylabel('episode return')
    axis.grid(alpha=0.3)
    axis.ticklabel_format(axis='x', style='sci', scilimits=(0, 3))
  for axis in list(axes.flat)[len(tasks):]:
    axis.axis('off')
  handles, labels = [], []
  for axis in axes.flat:
    for handle, label in zip(*axis.get_legend_handles_labels()):
      name = label.rsplit(' (', 1)[0]
      if name not in labels:
        handles.append(handle)
        labels.append(name)
  fig.legend(handles, labels, loc='lower center', ncol=min(len(labels), 5), frameon=False)
  fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.12, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_aggregates(results, normalised, path):
  """Mean, median and IQM with CIs per method (PNG at `path`)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  methods = list(results)
  colors = _colors(methods)
  fig, axes = plt.subplots(1, len(METRICS), figsize=(3.5 * len(METRICS), 0.5 * len(methods) + 1.5),
                           squeeze=False)
  for axis, metric in zip(axes[0], METRICS):
    for row, method in enumerate(methods):
      point, low, high = results[method][metric]
      axis.barh(row, high - low, left=low, height=0.6, color=colors[method], alpha=0.6)
      axis.plot([point, point], [row - 0.3, row + 0.3], color='black', linewidth=1.5)
    axis.set_yticks(range(len(methods)))
    axis.set_yticklabels(methods if metric == METRICS[0] else [''] * len(methods))
    axis.set_title(metric.upper() if metric == 'iqm' else metric.capitalize())
    axis.set_xlabel('human-normalised score' if normalised else 'score')
    axis.grid(alpha=0.3, axis='x')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _fmt(value):
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return '-'
  magnitude = abs(value)
  if magnitude >= 100:
    return f'{value:.0f}'
  if magnitude >= 1:
    return f'{value:.1f}'
  return f'{value:.3f}'


def markdown(data, scores, results, common) -> str:
  """The final-score table (tasks x methods) and the aggregate table."""
  methods = list(data['methods'])
  suite = data['suite']
  lines = ['# Final scores', '']
  if suite is not None:
    protocol = suite.protocol
    window = f'the last {protocol.final_window:,} frames' if protocol.final_window else 'the run'
    lines.append(f'Suite `{suite.name}` ({protocol.source}): mean of the episodes ending in '
                 f'{window} of {data["budget"] or protocol.budget:,}; mean +- std over seeds '
                 '(seeds).')
  else:
    lines.append('Mean of the episodes in the last 10% of each run; mean +- std over seeds '
                 '(seeds).')
  lines += ['', '| Task | ' + ' | '.join(methods) + ' |',
            '|---|' + '---|' * len(methods)]
  for task in data['tasks']:
    cells = []
    for method in methods:
      values = list(scores.get(method, {}).get(task, {}).values())
      if values:
        std = float(np.std(values)) if len(values) > 1 else 0.0
        cells.append(f'{_fmt(float(np.mean(values)))} +- {_fmt(std)} ({len(values)})')
      else:
        cells.append('-')
    lines.append(f'| {task} | ' + ' | '.join(cells) + ' |')
  if results:
    kind = 'human-normalised' if data['baselines'] is not None else 'raw'
    lines += ['', f'## Aggregates ({kind}, {len(common)} tasks, 95% stratified-bootstrap CIs)',
              '', '| Metric | ' + ' | '.join(results) + ' |', '|---|' + '---|' * len(results)]
    for metric in METRICS:
      name = 'IQM' if metric == 'iqm' else metric.capitalize()
      cells = []
      for method in results:
        point, low, high = results[method][metric]
        cells.append(f'{_fmt(point)} [{_fmt(low)}, {_fmt(high)}]')
      lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def make_report(runs, out, references=(), suite=None, baselines=None, bins=30, budget=None,
                tasks=None, reps=2000) -> dict:
  """Writes curves.png, aggregates.png (when there are aggregates), scores.md and
  final_scores.json to `out`; returns their paths."""
  data = gather(runs, references, suite, budget, baselines, tasks)
  os.makedirs(out, exist_ok=True)
  paths = {'curves': os.path.join(out, 'curves.png'), 'table': os.path.join(out, 'scores.md'),
           'scores': os.path.join(out, 'final_scores.json')}
  plot_curves(data, paths['curves'], bins=bins)
  scores = final_scores(data)
  results, common = aggregates(data, scores, reps=reps)
  if results:
    paths['aggregates'] = os.path.join(out, 'aggregates.png')
    plot_aggregates(results, data['baselines'] is not None, paths['aggregates'])
  with open(paths['table'], 'w') as file:
    file.write(markdown(data, scores, results, common))
  with open(paths['scores'], 'w') as file:
    json.dump({'suite': data['suite'].name if data['suite'] else None, 'budget': data['budget'],
               'final': scores, 'aggregate_tasks': common,
               'aggregates': {m: {k: list(v) for k, v in r.items()} for m, r in results.items()}},
              file, indent=1)
  return paths


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m experiments.plot',
      description='Learning curves, final-score tables and aggregates of run directories.')
  parser.add_argument('--runs', required=True, help='a tree of run directories')
  parser.add_argument('--reference', action='append', default=[],
                      help='a published score file (.json.gz) or a directory of them (repeatable)')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--suite', default=None, help='suite protocol (default: inferred)')
  parser.add_argument('--tasks', default=None, help='comma-separated tasks (default: our runs\')')
  parser.add_argument('--baselines', default=None,
                      help=f'random/human scores YAML (default: {DEFAULT_BASELINES} if it exists)')
  parser.add_argument('--bins', type=int, default=30, help='bins of the common x axis')
  parser.add_argument('--budget', type=float, default=None,
                      help='env frames to compare at (default: the suite\'s budget)')
  parser.add_argument('--reps', type=int, default=2000, help='bootstrap resamples')
  args = parser.parse_args(argv)
  try:
    if args.bins < 1:
      raise PlotError(f'--bins: must be >= 1, got {args.bins}.')
    if args.reps < 1:
      raise PlotError(f'--reps: must be >= 1, got {args.reps}.')
    tasks = [t.strip() for t in args.tasks.split(',') if t.strip()] if args.tasks else None
    paths = make_report(args.runs, args.out, args.reference, args.suite, args.baselines,
                        args.bins, args.budget, tasks, args.reps)
  except PlotError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  for name, path in paths.items():
    print(f'{name}: {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())

"""The plotter renders curves, aggregates and a Markdown table from small synthetic runs."""
import gzip
import json
import os

import numpy as np

from experiments import plot


def _write_runs(root, make_run):
  rng = np.random.default_rng(0)
  for env in ('atari100k_pong', 'atari100k_boxing'):
    for seed in range(2):
      steps = np.arange(500, 100_001, 2500)
      episodes = [(int(s), float(s / 5000 + rng.normal())) for s in steps]
      make_run(root, 'dreamerv3', env, seed, episodes, action_repeat=4, suite='atari100k',
               steps=100_000)


def test_plot_renders_with_reference(tmp_path, make_run):
  runs = str(tmp_path / 'runs')
  _write_runs(runs, make_run)
  reference = tmp_path / 'atari100k-other.json.gz'
  records = [{'task': task, 'method': 'other', 'seed': seed, 'xs': [0, 200_000, 400_000],
              'ys': [None, 1.0, 3.0 + seed]}
             for task in ('atari_pong', 'atari_boxing', 'atari_alien') for seed in range(3)]
  with gzip.open(reference, 'wt') as file:
    json.dump(records, file)
  baselines = tmp_path / 'baselines.yaml'
  baselines.write_text('atari57_gamer:\n  atari_pong: [-20.7, 14.6]\n  atari_boxing: [0.1, 12.1]\n')
  out = str(tmp_path / 'out')
  code = plot.main(['--runs', runs, '--reference', str(reference), '--out', out,
                    '--baselines', str(baselines), '--bins', '10', '--reps', '100'])
  assert code == 0
  for name in ('curves.png', 'aggregates.png'):
    assert os.path.getsize(os.path.join(out, name)) > 10_000
  table = open(os.path.join(out, 'scores.md')).read().splitlines()
  assert '| Task | dreamerv3 | other (ref) |' in table
  rows = {line.split(' | ')[0][2:]: line for line in table if line.startswith('| ')}
  assert {'atari_boxing', 'atari_pong', 'Mean', 'Median', 'IQM'} <= set(rows)
  assert 'atari_alien' not in rows  # only the tasks we ran
  # The reference's final score: the mean of the seeds' last episodes (3, 4, 5) -> 4.0 +- 0.816.
  assert '4.0 +- 0.816 (3)' in rows['atari_pong']
  final = json.load(open(os.path.join(out, 'final_scores.json')))
  assert final['suite'] == 'atari100k' and final['budget'] == 400_000
  # Human-normalised mean of 'other' over its 3 seeds and 2 tasks: pong (4 + 20.7) / 35.3 and
  # boxing (4 - 0.1) / 12, averaged.
  expected = np.mean([(4.0 + 20.7) / 35.3, (4.0 - 0.1) / 12.0])
  assert abs(final['aggregates']['other (ref)']['mean'][0] - expected) < 1e-9


def test_plot_cli_errors(tmp_path, capsys):
  assert plot.main(['--runs', str(tmp_path / 'missing'), '--out', str(tmp_path / 'o')]) == 2
  assert 'not a directory' in capsys.readouterr().err
  (tmp_path / 'empty').mkdir()
  assert plot.main(['--runs', str(tmp_path / 'empty'), '--out', str(tmp_path / 'o')]) == 2
  assert 'no run directories' in capsys.readouterr().err

"""experiments/gpu_curves.py: bins, the published band, and the CPU dry run CI makes of it."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import gpu_curves

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _scores(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as file:
    for step, score in rows:
      file.write(json.dumps({'step': step, 'score': score, 'length': 500}) + '\n')


def test_seed_curves_bin_agent_steps_as_env_frames(tmp_path):
  # Agent steps x repeat 2 = frames; bins of 10,000 frames = 5,000 agent steps.
  _scores(tmp_path / 'seed0' / 'scores.jsonl', [(1000, 10.0), (4000, 20.0), (12000, 50.0)])
  _scores(tmp_path / 'seed1' / 'scores.jsonl', [(6000, 30.0)])
  curves = gpu_curves.seed_curves(str(tmp_path), 2, 10_000)
  assert curves == {'0': [15.0, None, 50.0], '1': [None, 30.0]}
  # Read while the run writes: a partial last line is skipped.
  with open(tmp_path / 'seed1' / 'scores.jsonl', 'a') as file:
    file.write('{"step": 9000, "sco')
  assert gpu_curves.seed_curves(str(tmp_path), 2, 10_000)['1'] == [None, 30.0]
  single = tmp_path / 'one'
  _scores(single / 'scores.jsonl', [(100, 1.0)])
  assert gpu_curves.seed_curves(str(single), 1, 10_000) == {'0': [1.0]}


def test_published_curve_at_each_bins_end(tmp_path):
  runs = [{'task': 'dmc_walker_walk', 'method': 'dreamerv3', 'seed': s,
           'xs': [10_000, 20_000, 30_000], 'ys': [100.0 * (s + 1), 200.0 * (s + 1), 300.0]}
          for s in range(2)] + [{'task': 'dmc_cheetah_run', 'method': 'dreamerv3', 'seed': 0,
                                 'xs': [10_000], 'ys': [7.0]}]
  with gzip.open(tmp_path / 'dmc_proprio-dreamerv3.json.gz', 'wt') as file:
    json.dump(runs, file)
  curve = gpu_curves.published_curve('mjx_walker_walk', 3, 10_000, [str(tmp_path)])
  assert curve['mean'] == [150.0, 300.0, 300.0]
  assert curve['min'] == [100.0, 200.0, 300.0] and curve['max'] == [200.0, 400.0, 300.0]
  assert curve['seeds'] == 2
  # Before the first published point: no value, not an extrapolation.
  assert gpu_curves.published_curve('mjx_walker_walk', 2, 5_000, [str(tmp_path)])['mean'] == [
      None, 150.0]
  assert gpu_curves.published_curve('mjx_walker_walk', 1, 10_000, [str(tmp_path / 'no')]) == {}


def test_non_mjx_task_is_a_one_line_error(tmp_path, capsys):
  with pytest.raises(SystemExit) as stop:
    gpu_curves.main(['--budget', '10', '--out', str(tmp_path), '--tasks', 'dmc_walker_walk'])
  assert stop.value.code == 2
  assert 'mjx_<domain>_<task>' in capsys.readouterr().err


def test_slot_runs_preallocate_only_the_replay_they_fill(tmp_path):
  """The slot's command at full size: dmc_proprio's 250k agent steps per seed, and a replay of
  that capacity. The preset's 5M would preallocate 20-22 GiB of device memory for 4 seeds, and
  the CPU dry run of the full command refused to start on that."""
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top
  command = gpu_curves.run_command('mjx_walker_walk', 4, 'size1m', str(tmp_path / 'run'), False)
  assert command[1:3] == ['-m', 'dreamer.main']
  config = config_lib.parse(command[3:], configs.PRESETS)
  assert config.run.steps == gpu_curves.STEPS == 250_000
  assert config.replay.capacity == config.run.steps
  assert config.run.seeds == 4 and config.run.loop == 'device'
  assert config.env.action_repeat == 2 and config.run.train_ratio == 512


def test_tiny_dry_run_writes_curves_and_harness(tmp_path):
  """The prepared GPU command at debug size on the CPU: speed harness, then MJX cartpole
  swingup under --loop device with 2 vmapped seeds, curves and figure written."""
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.gpu_curves', '--tiny', '--budget', '600', '--out',
       str(tmp_path), '--tasks', 'mjx_cartpole_swingup', '--seeds', '2'],
      cwd=ROOT, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.load(open(tmp_path / 'gpu_curves.json'))
  assert report['status'] == {'mjx_cartpole_swingup': 'done'}
  harness = report['harness']
  assert harness['status'] == 'done' and harness['budget_s'] == 150   # a quarter of 600 s
  assert [r['size'] for r in harness['results']] == ['size1m']
  assert harness['results'][0]['updates_per_s'] > 0
  result = report['tasks']['mjx_cartpole_swingup']
  assert sorted(result['seeds']) == ['0', '1']
  # 150 agent steps = 300 frames in 100-frame bins; episodes of 25 steps end in bins 1 and 2.
  assert result['frames'] == 300
  assert all(np.isfinite(v) for v in result['mean'] if v is not None)
  assert any(v is not None for v in result['mean'])
  assert result['published_task'] == 'dmc_cartpole_swingup'
  assert os.path.getsize(tmp_path / 'gpu_curves.png') > 10_000
  assert 'mjx_cartpole_swingup: done' in proc.stdout


def test_plot_from_the_json_alone(tmp_path):
  """The GPU image has no matplotlib: the figure is drawn here from the returned JSON."""
  report = {'tasks': {'mjx_walker_walk': {
      'seeds': {'0': [10.0, None, 30.0], '1': [12.0, 20.0]}, 'mean': [11.0, 20.0, 30.0],
      'published': {'mean': [30.0, 60.0, 90.0], 'min': [20.0, 50.0, 80.0],
                    'max': [40.0, 70.0, 100.0], 'seeds': 5}}},
            'bin_frames': 10_000, 'size': 'size1m', 'seeds': 2}
  (tmp_path / 'gpu_curves.json').write_text(json.dumps(report))
  gpu_curves.main(['--plot', str(tmp_path / 'gpu_curves.json')])
  assert os.path.getsize(tmp_path / 'gpu_curves.png') > 10_000

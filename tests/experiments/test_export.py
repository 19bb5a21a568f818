"""Scores export: run directories -> gzipped JSON score files and back."""
import gzip
import json
import os

import pytest

from experiments import export


def test_round_trip_frames_and_steps(tmp_path, make_run):
  episodes = [(120, 1.5), (250, -2.0), (400, 7.25)]
  run = make_run(str(tmp_path / 'runs'), 'dreamerv3', 'atari100k_pong', 3, episodes,
                 action_repeat=4)
  out = str(tmp_path / 'scores.json.gz')
  records = export.export(str(tmp_path / 'runs'), out, x='frames')
  with gzip.open(out, 'rt') as file:  # the published format: a gzipped JSON list
    raw = json.load(file)
  assert raw == records == export.load(out)
  assert raw == [{'task': 'atari_pong', 'method': 'dreamerv3', 'seed': 3,
                  'xs': [480, 1000, 1600], 'ys': [1.5, -2.0, 7.25]}]
  steps = export.export_run(run, x='steps')
  assert steps['xs'] == [120, 250, 400]
  # Back to episodes: xs / action_repeat and ys give the scores.jsonl lines again.
  lines = [json.loads(line) for line in open(os.path.join(run, 'scores.jsonl'))]
  assert [(x // 4, y) for x, y in zip(raw[0]['xs'], raw[0]['ys'])] == \
      [(line['step'], line['score']) for line in lines]


def test_many_runs_and_partial_last_line(tmp_path, make_run):
  root = str(tmp_path / 'runs')
  make_run(root, 'planet', 'dmc_walker_walk', 0, [(10, 1.0)], action_repeat=2)
  run = make_run(root, 'planet', 'dmc_walker_walk', 1, [(10, 2.0), (20, 3.0)], action_repeat=2)
  with open(os.path.join(run, 'scores.jsonl'), 'a') as file:
    file.write('{"step": 30, "sco')  # a run killed mid-write
  # A multi-host run's second host logs its episodes in hosts/1/: part of seed 1, not a seed.
  os.makedirs(os.path.join(run, 'hosts', '1'))
  with open(os.path.join(run, 'hosts', '1', 'scores.jsonl'), 'w') as file:
    file.write('{"step": 10, "score": 9.0, "length": 10}\n')
  records = export.export(root, str(tmp_path / 'out.json.gz'), method='planet_ours')
  assert [(r['seed'], r['xs'], r['ys'], r['method']) for r in records] == [
      (0, [20], [1.0], 'planet_ours'), (1, [20, 40], [2.0, 3.0], 'planet_ours')]


def test_bad_inputs(tmp_path):
  bad = tmp_path / 'bad.json.gz'
  with gzip.open(bad, 'wt') as file:
    json.dump([{'task': 't', 'method': 'm', 'seed': 0, 'xs': [1, 2], 'ys': [1]}], file)
  with pytest.raises(export.RunError, match='2 xs but 1 ys'):
    export.load(str(bad))
  with pytest.raises(export.RunError, match='no run directories'):
    export.export(str(tmp_path), str(tmp_path / 'x.json.gz'))
  assert export.main(['--runs', str(tmp_path / 'missing'), '--out', 'x.json.gz']) == 2

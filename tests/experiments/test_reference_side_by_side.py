"""experiments/reference_side_by_side.py: both implementations' episodes on one x-axis."""
import json

import pytest

from experiments import reference_side_by_side as sbs


def _scores(directory, rows):
  directory.mkdir(parents=True)
  with open(directory / 'scores.jsonl', 'w') as file:
    for row in rows:
      file.write(json.dumps(row) + '\n')
  return str(directory)


def test_episodes_in_env_frames_and_bins(tmp_path):
  # The reference logs env frames ('episode/score'); ours logs agent steps ('score').
  reference = _scores(tmp_path / 'ref', [{'step': 2001, 'episode/score': 10.0},
                                          {'step': 7000, 'episode/score': 30.0}])
  ours = _scores(tmp_path / 'ours', [{'step': 1001, 'score': 12.0, 'length': 500},
                                     {'step': 3500, 'score': 20.0, 'length': 500},
                                     {'step': 3900, 'score': 40.0, 'length': 500}])
  assert sbs.episodes(reference, 1) == [(2001, 10.0), (7000, 30.0)]
  assert sbs.episodes(ours, 2) == [(2002, 12.0), (7000, 20.0), (7800, 40.0)]
  # 8,000 frames in bins of 4,000: episodes ending in [0, 4000) and [4000, 8000).
  assert sbs.binned(sbs.episodes(ours, 2), 4000, 8000) == [12.0, 30.0]
  assert sbs.binned([], 4000, 12000) == [None, None, None]
  assert sbs.episodes(str(tmp_path / 'missing'), 2) == []


def test_unsupported_task_is_one_line(tmp_path, capsys):
  reference = tmp_path / 'dreamerv3'
  (reference / 'dreamerv3').mkdir(parents=True)
  (reference / 'dreamerv3' / 'agent.py').write_text('')
  with pytest.raises(SystemExit) as stop:
    sbs.main(['--reference', str(reference), '--task', 'atari_pong', '--out', str(tmp_path)])
  assert stop.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('reference_side_by_side: error: --task atari_pong') and '\n' not in err

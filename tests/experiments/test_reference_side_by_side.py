"""experiments/reference_side_by_side.py: both implementations' episodes on one x-axis."""
import json
import os
import pathlib

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


def test_both_commands_run_the_same_settings(tmp_path):
  """The reference's command, read by its own flag parser and presets, and ours, read by ours,
  agree on every setting the comparison names (f8817c4's DMC repeat is 1 unless passed)."""
  from tests.experiments.test_reference_parity import REFERENCE  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(os.path.join(REFERENCE, 'dreamerv3')):
    pytest.skip(f'no reference at {REFERENCE}')
  elements = pytest.importorskip('elements')
  yaml = pytest.importorskip('ruamel.yaml')
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top
  args = ('dmc_cartpole_balance', 'size1m', 1, 8000, 64.0, 4, str(tmp_path))
  flags = sbs.reference_command(pathlib.Path(REFERENCE), *args)[2:]
  presets = yaml.YAML(typ='safe').load(
      (pathlib.Path(REFERENCE) / 'dreamerv3' / 'configs.yaml').read_text())
  chosen, rest = elements.Flags(configs=['defaults']).parse_known(flags)
  reference = elements.Config(presets['defaults'])
  for name in chosen.configs:
    reference = reference.update(presets[name])
  reference = elements.Flags(reference).parse(rest)
  ours = config_lib.parse(sbs.our_command(*args, [])[3:], configs.PRESETS)
  assert reference.env.dmc.repeat == ours.env.action_repeat == sbs.ACTION_REPEAT
  assert reference.run.train_ratio == ours.run.train_ratio == 64.0
  assert reference.run.envs == ours.run.envs == 4
  assert reference.seed == ours.run.seed == 1
  assert reference.run.steps == ours.run.steps == 8000
  assert (reference.batch_size, reference.batch_length) == (
      ours.run.batch_size, ours.run.batch_length)
  assert reference.jax.compute_dtype == ours.run.precision == 'float32'
  assert reference.agent.dyn.rssm.deter == ours.agent.rssm.deter
  assert reference.env.dmc.image is False


def test_random_baseline_plays_real_episodes():
  """The first episodes' baseline: the real DMC cartpole with the initial actor's spread."""
  assert abs(sbs.INITIAL_STD - (0.9 * 0.8807970779778823 + 0.1)) < 1e-9   # 0.9 sigmoid(2) + 0.1
  returns = sbs.random_policy_returns('dmc_cartpole_balance', 1)
  # 500 agent steps of repeat 2, each frame's reward in [0, 1].
  assert len(returns) == 1 and 0 < returns[0] <= 1000

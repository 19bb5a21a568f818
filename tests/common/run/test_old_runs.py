"""Runs written before `common/` was regrouped (tests/data/before_regrouping, by main at
361c7c6) still load their config.yaml and resume from their checkpoint and replay."""
import os
import shutil

import pytest

from common.run import config as config_lib
from common.run import train_loop

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'data',
                    'before_regrouping')


def _presets(name):
  if name == 'planet':
    from planet import configs  # pylint: disable=g-import-not-at-top
  elif name == 'world_models':
    from world_models_ha import configs  # pylint: disable=g-import-not-at-top
  else:
    from dreamer import configs  # pylint: disable=g-import-not-at-top
  return configs.PRESETS


# Preset values changed on purpose since 361c7c6: the old file holds the old value.
CHANGED_SINCE = {'dreamerv2': {'env.time_limit': 0}}   # Atari episodes end at 108k frames


@pytest.mark.parametrize('algo, env', [('dreamerv2', 'atari_pong'),
                                       ('planet', 'dmc_cartpole_swingup'),
                                       ('world_models', 'doom_take_cover')])
def test_old_config_loads_equal_to_todays_preset(algo, env):
  presets = _presets(algo)
  loaded = config_lib.load(os.path.join(DATA, f'{algo}_config.yaml'), presets.base)
  loaded = config_lib.replace(loaded, **CHANGED_SINCE.get(algo, {}))
  argv = ['--env', env, '--logdir', '/tmp/x'] + (['--config', algo] if 'dreamer' in algo else [])
  assert loaded == config_lib.parse(argv, presets, 'test')


def test_old_dreamerv3_run_resumes(tmp_path):
  from dreamer import main  # pylint: disable=g-import-not-at-top
  logdir = tmp_path / 'run'
  shutil.copytree(os.path.join(DATA, 'dreamerv3'), logdir)
  config = config_lib.load(str(logdir / 'config.yaml'), _presets('dreamerv3').base)
  config = config_lib.replace(config, **{'run.logdir': str(logdir), 'run.steps': 320,
                                           'run.log_every': 1e9, 'run.report_every': 1e9})
  summary = train_loop.run(main._make_agent, config)  # pylint: disable=protected-access
  assert summary['start_step'] == 300 and summary['step'] >= 320
  assert summary['replay_steps'] >= 320  # the old replay chunk was loaded, not refilled
  assert summary['updates'] > 101  # the checkpoint's 101 updates were restored

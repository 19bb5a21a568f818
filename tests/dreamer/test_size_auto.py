"""`--size auto` and the memory check before compiling (common/run/cli.py `fit_size`)."""
import jax
import numpy as np
import pytest

from common.envs.spaces import Space
from common.run import cli
from common.run import memory
from dreamer import configs
from dreamer import main as dreamer_main

ATARI_OBS = {'image': Space(np.uint8, (96, 96, 1)), 'reward': Space(np.float32, ()),
             'is_first': Space(bool, ()), 'is_last': Space(bool, ()),
             'is_terminal': Space(bool, ())}
ATARI_ACT = Space(np.int32, (), 0, 17)
PROPRIO_OBS = {'position': Space(np.float32, (14,)), 'velocity': Space(np.float32, (9,)),
               'reward': Space(np.float32, ()), 'is_first': Space(bool, ()),
               'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
PROPRIO_ACT = Space(np.float32, (6,), -1.0, 1.0)


def _fit(argv, capsys, obs=ATARI_OBS, act=ATARI_ACT):
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.parse(argv, configs.PRESETS, prog='dreamer.main')
  fit = cli.fit_size(argv, configs.PRESETS, 'dreamer.main', dreamer_main._make_agent)
  chosen = fit(config, obs, act)
  return chosen, capsys.readouterr()


def test_auto_picks_size1m_on_this_cpu(capsys):
  chosen, out = _fit(['--env', 'atari_pong', '--logdir', '/tmp/fit'], capsys)
  assert chosen.size == 'size1m' and chosen.agent.rssm.deter == 512
  assert out.out.count('--size auto: size1m on this cpu device') == 1


def test_explicit_size_that_cannot_fit_exits_2_before_compiling(capsys, monkeypatch):
  # size200m on Atari needs ~48 GiB here (the main job on a 24 GB CPU machine).
  monkeypatch.setattr(memory, 'device_bytes', lambda device=None: 24 * 2 ** 30)
  compiled = []
  monkeypatch.setattr(jax, 'jit', lambda *a, **k: compiled.append(a))
  with pytest.raises(SystemExit) as exit_info:
    _fit(['--env', 'atari_pong', '--size', 'size200m', '--logdir', '/tmp/fit'], capsys)
  assert exit_info.value.code == 2 and not compiled
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "size 'size200m' with batch 16 x 64 needs about" in err and 'smaller --size' in err


def test_auto_falls_back_to_the_next_smaller_size_that_fits(capsys, monkeypatch):
  # On an accelerator auto picks DMC's size12m; with memory between size1m's and size12m's
  # estimates it takes size1m, announced once. Traced on the CPU with the backend patched.
  argv = ['--env', 'dmc_walker_walk', '--suite', 'dmc_proprio', '--logdir', '/tmp/fit']
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  needs = {}
  for size in ('size1m', 'size12m'):
    monkeypatch.setattr(memory, 'device_bytes', lambda device=None: 2 ** 50)
    chosen, _ = _fit(argv + ['--size', size], capsys, PROPRIO_OBS, PROPRIO_ACT)
    agent = dreamer_main._make_agent(chosen, PROPRIO_OBS, PROPRIO_ACT)
    needs[size] = memory.train_step_bytes(agent, PROPRIO_OBS, PROPRIO_ACT, 16, 65)
  assert needs['size1m'] < needs['size12m']
  between = (needs['size1m'] + needs['size12m']) / 2 / cli.MEMORY_SHARE
  monkeypatch.setattr(memory, 'device_bytes', lambda device=None: int(between))
  chosen, out = _fit(argv, capsys, PROPRIO_OBS, PROPRIO_ACT)
  assert chosen.size == 'size1m'
  assert out.out.count('--size auto: size1m') == 1

"""common.run.config: preset order, typed --set, errors (one line, exit 2), YAML."""
import dataclasses
import os
import subprocess
import sys
from typing import Literal, Optional

import pytest

from common.envs.config import EnvConfig
from common.run import config as cfg
from common.run.config import ConfigError, RunConfig

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))


@dataclasses.dataclass(frozen=True)
class NetConfig:
  units: int = 8
  layers: tuple[int, ...] = (8, 8)
  act: Literal['silu', 'elu'] = 'silu'
  norm: bool = True
  dropout: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  lr: float = 1e-4
  names: tuple[str, ...] = ('a',)
  pair: tuple[int, float] = (1, 2.0)
  trace: tuple = ()            # preset names, in the order they were applied
  net: NetConfig = NetConfig()

  def __post_init__(self):
    if self.lr < 0:
      raise ValueError('lr must be >= 0')


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
  capacity: int = 100
  chunk: int = 10


@dataclasses.dataclass(frozen=True)
class Config:
  algo: str = ''
  suite: str = ''
  size: str = ''
  run: RunConfig = RunConfig()
  env: EnvConfig = EnvConfig()
  replay: ReplayConfig = ReplayConfig()
  agent: AgentConfig = AgentConfig()


def _step(name, **agent):
  def preset(config):
    trace = config.agent.trace + (f'{name}:{config.algo}/{config.suite}/{config.size}',)
    return dataclasses.replace(config, agent=dataclasses.replace(
        config.agent, trace=trace, **agent))
  return preset


def _atari(config):
  config = _step('atari', lr=2.0)(config)
  return dataclasses.replace(config, env=dataclasses.replace(
      config.env, action_repeat=4, gray=True))


PRESETS = cfg.Presets(
    base=Config,
    algos={'alpha': _step('alpha', lr=1.0), 'beta': _step('beta')},
    suites={'atari': _atari, 'dmc': _step('dmc')},
    sizes={'small': _step('small', lr=3.0), 'big': _step('big')},
    suite_for_env=lambda name: {'atari': 'atari', 'dmc': 'dmc'}.get(
        name.split('_')[0], ''),
    default_size='small')


def _parse_error(argv, capsys):
  with pytest.raises(SystemExit) as info:
    cfg.parse(argv, PRESETS, prog='toy')
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('toy: error: '), err
  assert 'Traceback' not in err
  return err


def test_composition_order_and_recorded_names():
  config = cfg.parse(['--config', 'alpha', '--env', 'atari_pong'], PRESETS, 'toy')
  # Each preset sees its own name already recorded, and they run in order.
  assert config.agent.trace == ('alpha:alpha//', 'atari:alpha/atari/',
                                'small:alpha/atari/small')
  assert (config.algo, config.suite, config.size) == ('alpha', 'atari', 'small')
  assert config.agent.lr == 3.0           # size preset wins over algo, suite
  assert config.env.action_repeat == 4 and config.env.gray
  assert config.env.name == 'atari_pong'

  config = cfg.parse(['--config', 'alpha', '--env', 'atari_pong', '--size',
                      'big', '--set', 'agent.lr=4', '--set', 'agent.lr=5'],
                     PRESETS, 'toy')
  assert config.agent.lr == 5.0 and config.size == 'big'   # last --set wins
  assert config.agent.trace[-1] == 'big:alpha/atari/big'


def test_suite_inference_override_and_flags_after_set():
  config = cfg.parse(['--config', 'beta', '--env', 'dmc_walker_walk'], PRESETS, 'toy')
  assert config.suite == 'dmc'
  config = cfg.parse(['--config', 'beta', '--env', 'dmc_walker_walk',
                      '--suite', 'atari'], PRESETS, 'toy')
  assert config.suite == 'atari' and config.env.action_repeat == 4
  # The env name given by --set also picks the suite.
  config = cfg.parse(['--config', 'beta', '--set', 'env.name=atari_breakout'],
                     PRESETS, 'toy')
  assert config.suite == 'atari' and config.env.name == 'atari_breakout'
  # Unknown prefix: no suite preset.
  config = cfg.parse(['--config', 'beta'], PRESETS, 'toy')
  assert config.suite == '' and config.env.name == 'gym_CartPole-v1'
  # Dedicated flags apply after --set.
  config = cfg.parse(['--config', 'beta', '--set', 'run.seed=1', '--seed', '7',
                      '--set', 'run.steps=5', '--steps', '1e6', '--eval_only',
                      '--from_checkpoint', '/tmp/ck', '--logdir', '/tmp/x',
                      '--set', 'env.name=dmc_a', '--env', 'atari_b'],
                     PRESETS, 'toy')
  assert config.run.seed == 7 and config.run.steps == 1_000_000
  assert config.run.eval_only is True and config.run.from_checkpoint == '/tmp/ck'
  assert config.run.logdir == '/tmp/x'
  assert config.env.name == 'atari_b' and config.suite == 'atari'


def test_default_logdir():
  config = cfg.parse(['--config', 'alpha', '--env', 'atari_pong', '--seed', '3'],
                     PRESETS, 'toy')
  assert config.run.logdir == os.path.join('runs', 'alpha', 'atari_pong', 'seed3')


def test_typed_set_values():
  base = Config()
  cases = [
      ('run.seed', '12', 12), ('run.steps', '1e6', 1_000_000),
      ('run.steps', '2_000', 2000), ('run.train_ratio', '256', 256.0),
      ('run.train_ratio', '1e-3', 0.001), ('run.eval_only', 'yes', True),
      ('run.eval_only', 'False', False), ('run.eval_only', '1', True),
      ('run.eval_only', 'no', False), ('run.logdir', '', ''),
      ('env.size', '96,96', (96, 96)), ('env.size', '[96, 96]', (96, 96)),
      ('env.size', '(32, 48)', (32, 48)), ('agent.names', 'x, y', ('x', 'y')),
      ('agent.names', '[]', ()), ('agent.names', 'z', ('z',)),
      ('agent.pair', '3,4', (3, 4.0)), ('agent.trace', '1,b', (1, 'b')),
      ('agent.net.layers', '[4,5,6]', (4, 5, 6)), ('agent.net.act', 'elu', 'elu'),
      ('agent.net.dropout', '0.5', 0.5), ('agent.net.dropout', 'none', None),
      ('agent.net.norm', 'TRUE', True),
  ]
  for key, text, expected in cases:
    value = cfg.get(cfg.override(base, [f'{key}={text}']), key)
    assert value == expected and type(value) is type(expected), (key, text, value)
  # Only the named field changes; everything else keeps its value.
  changed = cfg.override(base, ['agent.net.units=3'])
  assert changed.agent.net == NetConfig(units=3) and changed.run == base.run


def test_bad_values_name_key_type_and_value():
  bad = [
      ('run.seed=abc', "--set run.seed: expected int, got 'abc'"),
      ('run.steps=1.5', "--set run.steps: expected int, got '1.5'"),
      ('run.train_ratio=fast', "--set run.train_ratio: expected float, got 'fast'"),
      ('run.eval_only=maybe', "--set run.eval_only: expected bool, got 'maybe'"),
      ('env.size=96,x', "--set env.size: expected tuple of int, got '96,x'"),
      ('agent.pair=1,2,3', "--set agent.pair: expected tuple (int, float), got '1,2,3'"),
      ('agent.net.act=relu', "--set agent.net.act: expected one of 'silu', 'elu', got 'relu'"),
      ('agent.net.dropout=x', "--set agent.net.dropout: expected float or None, got 'x'"),
      ('agent.lr=-1', '--set agent.lr: lr must be >= 0'),
      ('run=3', "'run' is a section; set one of its fields, e.g. run.logdir=..."),
      ('run.seed', "--set expects key=value, got 'run.seed'"),
      ('algo=beta', '--set algo=... is not allowed; use --config beta'),
  ]
  for assignment, message in bad:
    with pytest.raises(ConfigError) as info:
      cfg.override(Config(), [assignment])
    assert str(info.value) == message


def test_unknown_keys_suggest_closest():
  expected = {
      'run.trian_ratio': 'run.train_ratio',
      'train_ratio': 'run.train_ratio',
      'agent.net.unit': 'agent.net.units',
      'env.sise': 'env.size',
  }
  for key, suggestion in expected.items():
    with pytest.raises(ConfigError) as info:
      cfg.override(Config(), [f'{key}=1'])
    message = str(info.value)
    assert message.startswith(f"unknown config key '{key}'; did you mean ")
    assert suggestion in message
  with pytest.raises(ConfigError, match='top-level keys are algo, suite, size, '
                     'run, env, replay, agent'):
    cfg.override(Config(), ['zzzz=1'])


def test_cli_errors_exit_2_with_one_line(capsys):
  err = _parse_error(['--config', 'gamma'], capsys)
  assert "unknown algorithm preset 'gamma'; available: alpha, beta" in err
  err = _parse_error(['--config', 'alpha', '--size', 'huge'], capsys)
  assert "unknown size preset 'huge'; available: small, big" in err
  err = _parse_error(['--config', 'alpha', '--suite', 'mc'], capsys)
  assert "unknown suite preset 'mc'; available: atari, dmc" in err
  err = _parse_error(['--config', 'alpha', '--set', 'run.trian_ratio=2'], capsys)
  assert 'did you mean run.train_ratio' in err
  err = _parse_error(['--config', 'alpha', '--seed', 'x'], capsys)
  assert "argument --seed: expected int, got 'x'" in err
  err = _parse_error(['--set', 'run.seed=1'], capsys)
  assert '--config is required; available: alpha, beta' in err
  err = _parse_error(['--config', 'alpha', '--bogus'], capsys)   # argparse's own
  assert 'unrecognized arguments: --bogus' in err
  err = _parse_error(['--config', 'alpha', '--set', 'run.batch_size=0'], capsys)
  assert 'invalid config: run.batch_size must be positive, got 0' in err
  err = _parse_error(['--config', 'alpha', '--set', 'run.precision=fp8'], capsys)
  assert 'run.precision must be one of auto, float32, bfloat16' in err


def test_validate_types_ranges_and_extra_validators():
  cfg.validate(Config())
  bad = [
      (Config(run=RunConfig(steps=-1)), 'run.steps must be >= 0, got -1'),
      (Config(run=RunConfig(batch_length=0)), 'run.batch_length must be positive'),
      (Config(run=RunConfig(steps=1e6)), 'run.steps must be int, got 1000000.0 (float)'),
      (Config(env=EnvConfig(size=(64,))), 'env.size must be two positive ints'),
      (Config(agent=AgentConfig(names=['a'])), 'agent.names must be tuple of str'),
  ]
  for config, message in bad:
    with pytest.raises(ConfigError, match=message.replace('(', r'\(').replace(')', r'\)')):
      cfg.validate(config)

  def even_seed(config):
    if config.run.seed % 2:
      raise ValueError('run.seed must be even')
  cfg.validate(Config(), [even_seed])
  with pytest.raises(ConfigError, match='invalid config: run.seed must be even'):
    cfg.validate(Config(run=RunConfig(seed=1)), [even_seed])
  presets = PRESETS._replace(validators=(even_seed,))
  with pytest.raises(ConfigError, match='even'):
    cfg.compose(presets, 'alpha', seed=3)


def test_yaml_round_trip_and_format(tmp_path):
  config = cfg.parse(['--config', 'alpha', '--env', 'atari_pong', '--set',
                      'env.size=96,96', '--set', 'agent.net.dropout=0.25',
                      '--set', 'run.logdir=123', '--set', 'agent.names=yes,no'],
                     PRESETS, 'toy')
  path = str(tmp_path / 'sub' / 'config.yaml')
  cfg.save(config, path)
  loaded = cfg.load(path, Config)
  assert loaded == config
  assert loaded.env.size == (96, 96) and isinstance(loaded.agent.trace, tuple)
  assert loaded.run.logdir == '123' and loaded.agent.names == ('yes', 'no')
  text = open(path).read()
  assert 'train_ratio: 32.0' in text and 'size: [96, 96]' in text
  # Missing keys keep defaults; unknown ones are errors that name the file.
  (tmp_path / 'partial.yaml').write_text('run:\n  seed: 5\n')
  assert cfg.load(str(tmp_path / 'partial.yaml'), Config) == Config(run=RunConfig(seed=5))
  (tmp_path / 'bad.yaml').write_text('run:\n  sed: 5\n')
  with pytest.raises(ConfigError, match="unknown config key 'run.sed'; did you mean run.seed"):
    cfg.load(str(tmp_path / 'bad.yaml'), Config)
  with pytest.raises(ConfigError, match='config file not found'):
    cfg.load(str(tmp_path / 'missing.yaml'), Config)

  dumped = cfg.to_dict(config)
  assert dumped['env']['size'] == (96, 96) and dumped['agent']['net']['units'] == 8
  lines = cfg.format(config).splitlines()
  assert 'run:' in lines and 'agent:' in lines and '  net:' in lines
  assert any(line.split() == ['train_ratio:', '32.0'] for line in lines)
  assert any(line.split() == ['name:', 'atari_pong'] for line in lines)


def test_bad_config_in_subprocess_has_no_traceback():
  code = ('import dataclasses, sys\n'
          'from common.run import config as c\n'
          'from common.envs.config import EnvConfig\n'
          '@dataclasses.dataclass(frozen=True)\n'
          'class C:\n'
          '  algo: str = ""\n  suite: str = ""\n  size: str = ""\n'
          '  run: c.RunConfig = c.RunConfig()\n  env: EnvConfig = EnvConfig()\n'
          'p = c.Presets(C, {"x": lambda c: c}, {}, {}, lambda n: "")\n'
          'c.parse(sys.argv[1:], p, "prog")\n')
  result = subprocess.run(
      [sys.executable, '-c', code, '--set', 'run.batch_sise=3'],
      cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 2
  assert result.stderr == ("prog: error: unknown config key 'run.batch_sise'; "
                           'did you mean run.batch_size or run.batch_length?\n')

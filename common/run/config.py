"""Typed, frozen configs: preset composition, `--set` overrides, validation, CLI.

Composition order: algorithm preset, environment-suite preset, size preset,
then command-line overrides (`--set section.field=value`, repeatable).
Parsing values by field type, type checks and key suggestions live in
`common.run.config_values`; `ConfigError`, `keys` and `from_dict` are re-exported.
"""
import argparse
import dataclasses
import os
import sys
from typing import Any, Callable, NamedTuple, Optional, Sequence

import yaml

from common.run.config_values import (ConfigError, check_types, convert, field_hints, from_dict,
                                  init_fields, keys, unknown_key, unquote)


@dataclasses.dataclass(frozen=True)
class RunConfig:
  logdir: str = ''               # run directory; '' picks runs/{algo}/{env}/seed{seed}
  seed: int = 0
  steps: int = 1_000_000         # agent (policy) steps to train for
  envs: int = 1                  # parallel training environments
  eval_envs: int = 1             # parallel evaluation environments
  eval_every: int = 0            # agent steps between evaluations; 0 disables
  eval_episodes: int = 10        # episodes per evaluation (and for --eval_only)
  train_ratio: float = 32.0      # replayed steps per agent step (DreamerV3's definition)
  prefill: int = 1000            # agent steps with random actions before training
  pretrain: int = 0              # extra updates at once when training starts (train before collecting)
  train_starts: int = 0          # window starts replay must hold before training (V3 code: B * T)
  batch_size: int = 16
  batch_length: int = 64
  log_every: float = 60.0        # seconds between metric lines
  report_every: float = 300.0    # seconds between open-loop video reports
  save_every: float = 600.0      # seconds between checkpoints
  keep_checkpoints: int = 3
  precision: str = 'auto'        # 'auto' (bfloat16 on GPU/TPU, float32 on CPU), 'float32', 'bfloat16'
  eval_only: bool = False        # only evaluate the checkpoint in from_checkpoint (or the logdir's)
  from_checkpoint: str = ''      # checkpoint directory to start from
  offline_replay: str = ''       # train only from this replay directory, no env interaction
  max_nonfinite: int = 50        # consecutive skipped non-finite updates that stop the run
  prefetch: int = 2              # batches sampled and put on the devices ahead (a thread); 0: in the loop
  verbose: bool = False          # console: every metric on each log line (else a short line); --verbose
  # Devices (common/run/devices.py): local indices; the batch is split over the train devices.
  train_devices: tuple[int, ...] = ()   # () = every local device
  policy_devices: tuple[int, ...] = (0,)
  # Several hosts (jax.distributed); unset values come from JAX_COORDINATOR_ADDRESS,
  # JAX_NUM_PROCESSES, JAX_PROCESS_ID.
  coordinator: str = ''          # HOST:PORT of process 0
  processes: int = 0             # number of processes (0: the environment's, else 1)
  process_id: int = -1           # this process (-1: the environment's, else 0)
  # The whole loop as one compiled program (common/run/device_loop.py) for JAX-native envs.
  loop: str = 'python'           # 'python' (common/run/train_loop.py) or 'device'
  seeds: int = 1                 # --loop device: independent agents vmapped in one program
  chunk: int = 0                 # --loop device: env iterations per call (0: 1000 agent steps)
  # Added to $XLA_FLAGS before JAX starts: compiler speed levers such as the GPU's command
  # buffers for loops (issue 32; BENCHMARKS.md names the flag sets measured).
  xla_flags: str = ''


# ---------------------------------------------------------------------------
# The mechanism below is generic over any nested frozen-dataclass schema. An
# algorithm package defines its top-level `Config` (fields algo, suite, size,
# run, env, replay, agent) and a `Presets` value; its `main.py` calls
# `parse(sys.argv[1:], PRESETS, prog='dreamer.main')`.
# ---------------------------------------------------------------------------

PRECISIONS = ('auto', 'float32', 'bfloat16')
LOOPS = ('python', 'device')
# Top-level fields that record which presets built the config; set by flags.
_RECORDED = {'algo': '--config', 'suite': '--suite', 'size': '--size'}
# Dedicated flags -> the field they set.
FLAG_KEYS = {
    'logdir': 'run.logdir', 'seed': 'run.seed', 'steps': 'run.steps',
    'eval_only': 'run.eval_only', 'from_checkpoint': 'run.from_checkpoint',
    'env': 'env.name', 'loop': 'run.loop', 'seeds': 'run.seeds', 'verbose': 'run.verbose'}


class Presets(NamedTuple):
  """Everything `compose` needs to build one algorithm package's configs.

  base: the schema's top-level dataclass type (or any zero-argument factory,
    or a ready instance) giving the defaults every preset starts from.
  algos, suites, sizes: name -> function(Config) -> Config, applied in that
    order. Each receives a config whose `algo`/`suite`/`size` already names
    the preset being applied, so a size preset may branch on `config.algo`.
  suite_for_env: env name -> suite name ('' or None: apply no suite preset).
  default_size: the size preset used when `--size` is not given ('' for none).
  default_algo: the algorithm used when `--config` is not given ('' means
    required, unless there is only one algorithm).
  validators: extra checks `function(Config) -> None` that raise ConfigError
    (or ValueError), run by `validate` after the built-in ones.
  auto_sizes: the size presets (smallest first) that an `auto` size preset may pick; where
    its pick does not fit the device, the train loop falls back through the smaller ones.
  """
  base: Any
  algos: dict
  suites: dict
  sizes: dict
  suite_for_env: Callable[[str], Optional[str]]
  default_size: str = ''
  default_algo: str = ''
  validators: tuple = ()
  auto_sizes: tuple = ()


# --- Keys ------------------------------------------------------------------

def get(config, key: str):
  """The value at a dotted key, e.g. get(config, 'run.seed')."""
  value = config
  for part in key.split('.'):
    if not dataclasses.is_dataclass(value) or part not in {
        f.name for f in init_fields(value)}:
      raise unknown_key(key, keys(config))
    value = getattr(value, part)
  return value


def _replace(obj, label, **changes):
  try:
    return dataclasses.replace(obj, **changes)
  except (ValueError, TypeError) as e:  # a __post_init__ check
    raise ConfigError(f'{label}: {e}') from None


def set_value(config, key: str, value, label: str = ''):
  """Returns `config` with the field at dotted `key` set to `value`.

  `value` is command-line text ('96,96', '1e6', 'yes', 'none') or a Python
  value; either is converted to the field's declared type.
  """
  label = label or key
  parts = key.split('.')
  if not all(parts):
    raise ConfigError(f"bad config key '{key}'; expected section.field")
  node = config
  for i, part in enumerate(parts):
    if not dataclasses.is_dataclass(node) or part not in {
        f.name for f in init_fields(node)}:
      raise unknown_key(key, keys(config))
    if i < len(parts) - 1:
      node = getattr(node, part)
  current = getattr(node, parts[-1])
  hint = field_hints(type(node)).get(parts[-1], Any)
  if dataclasses.is_dataclass(current) and isinstance(value, str):
    example = keys(current, key + '.')[0]
    raise ConfigError(f"'{key}' is a section; set one of its fields, "
                      f'e.g. {example}=...')
  new = convert(value, hint, current, label)
  return _set_path(config, parts, new, label)


def _set_path(node, parts, new, label):
  if len(parts) == 1:
    return _replace(node, label, **{parts[0]: new})
  child = _set_path(getattr(node, parts[0]), parts[1:], new, label)
  return _replace(node, label, **{parts[0]: child})


def override(config, assignments: Sequence[str]):
  """Applies `key=value` strings (the `--set` flag) in order."""
  for assignment in assignments:
    key, sep, value = assignment.partition('=')
    key = key.strip()
    if not sep or not key:
      raise ConfigError(f"--set expects key=value, got '{assignment}'")
    if '.' not in key and key in _RECORDED and hasattr(config, key):
      raise ConfigError(f"--set {key}=... is not allowed; "
                        f"use {_RECORDED[key]} {value or 'NAME'}")
    config = set_value(config, key, value, label=f'--set {key}')
  return config


# --- Composition -----------------------------------------------------------

def _preset(kind, table, name):
  if name not in table:
    raise ConfigError(f"unknown {kind} preset '{name}'; available: "
                      f"{', '.join(table) or '(none)'}")
  return table[name]


def _apply(config, kind, name, function):
  try:
    result = function(config)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(f"{kind} preset '{name}': {e}") from None
  if type(result) is not type(config):
    raise TypeError(f"{kind} preset '{name}' returned {type(result).__name__},"
                    f' not {type(config).__name__}')
  return result


def _record(config, field, name):
  if hasattr(config, field):
    return _replace(config, field, **{field: name})
  return config


def _env_name_from_sets(assignments) -> Optional[str]:
  name = None
  for assignment in assignments:
    key, sep, value = assignment.partition('=')
    if sep and key.strip() == 'env.name':
      name = unquote(value.strip())
  return name


def replace(obj, **changes):
  """`dataclasses.replace` with dotted paths: `replace(c, **{'agent.rssm.deter': 512})`."""
  nested = {}
  for path, value in changes.items():
    head, _, rest = path.partition('.')
    if rest:
      nested.setdefault(head, {})[rest] = value
    else:
      nested[head] = value
  updates = {name: replace(getattr(obj, name), **value) if isinstance(value, dict) else value
             for name, value in nested.items()}
  return dataclasses.replace(obj, **updates)


def compose(presets: Presets, algo: Optional[str] = None, *,
            suite: Optional[str] = None, size: Optional[str] = None,
            env: Optional[str] = None, overrides: Sequence[str] = (),
            logdir=None, seed=None, steps=None, eval_only=None,
            from_checkpoint=None, loop=None, seeds=None, verbose=None,
            validate_config: bool = True):
  """Builds one config: algorithm, suite, size presets, `--set`, then flags.

  The suite is `suite` if given, else `presets.suite_for_env(env name)`, where
  the env name is `env`, else the last `env.name` override, else the algorithm
  preset's. Flags left as None keep the presets' values; an empty logdir
  becomes `default_logdir(config)`. Raises ConfigError; never exits.
  """
  base = presets.base
  config = base if dataclasses.is_dataclass(base) and not isinstance(
      base, type) else base()
  if algo is None:
    algo = presets.default_algo or (
        next(iter(presets.algos)) if len(presets.algos) == 1 else None)
  if algo is None:
    raise ConfigError('--config is required; available: '
                      + ', '.join(presets.algos))
  function = _preset('algorithm', presets.algos, algo)
  config = _apply(_record(config, 'algo', algo), 'algorithm', algo, function)

  env_name = env if env is not None else _env_name_from_sets(overrides)
  if env_name is not None:
    config = set_value(config, 'env.name', env_name, label='--env')
  if suite is None:
    env_name = get(config, 'env.name') if hasattr(config, 'env') else ''
    try:
      suite = presets.suite_for_env(env_name) or ''
    except ValueError as e:
      raise ConfigError(f"env '{env_name}': {e}; pass --suite") from None
    if suite and suite not in presets.suites:
      raise ConfigError(
          f"env '{env_name}' maps to suite '{suite}', which has no preset; "
          f"pass --suite with one of: {', '.join(presets.suites)}")
  config = _record(config, 'suite', suite)
  if suite:
    function = _preset('suite', presets.suites, suite)
    config = _apply(config, 'suite', suite, function)

  size = presets.default_size if size is None else size
  config = _record(config, 'size', size)
  if size:
    function = _preset('size', presets.sizes, size)
    config = _apply(config, 'size', size, function)

  config = override(config, overrides)
  flags = dict(logdir=logdir, seed=seed, steps=steps, eval_only=eval_only,
               from_checkpoint=from_checkpoint, env=env, loop=loop, seeds=seeds, verbose=verbose)
  for flag, value in flags.items():
    if value is not None:
      config = set_value(config, FLAG_KEYS[flag], value,
                         label=f'argument --{flag}')
  if hasattr(config, 'run') and hasattr(config.run, 'logdir'):
    logdir = config.run.logdir or default_logdir(config)
    config = set_value(config, 'run.logdir', os.path.expanduser(logdir))
  if validate_config:
    validate(config, presets.validators)
  return config


def default_logdir(config) -> str:
  """runs/{algo}/{env}/seed{seed}, relative to the working directory; with run.seeds > 1,
  runs/{algo}/{env}/seeds{first}-{last}, which holds seed{first}/ ... seed{last}/."""
  algo = getattr(config, 'algo', '') or 'run'
  env = str(get_or(config, 'env.name', '')).replace('/', '-') or 'env'
  seed = get_or(config, 'run.seed', 0)
  seeds = get_or(config, 'run.seeds', 1)
  name = f'seed{seed}' if seeds <= 1 else f'seeds{seed}-{seed + seeds - 1}'
  return os.path.join('runs', algo, env, name)


# --- Validation ------------------------------------------------------------

_CHECKS = (  # (key, predicate, requirement)
    ('run.steps', lambda x: x >= 0, 'must be >= 0'),
    ('run.batch_size', lambda x: x > 0, 'must be positive'),
    ('run.prefetch', lambda x: x >= 0, 'must be >= 0 (0 samples in the loop)'),
    ('run.loop', lambda x: x in LOOPS, f'must be one of {LOOPS}'),
    ('run.seeds', lambda x: x >= 1, 'must be >= 1'),
    ('run.chunk', lambda x: x >= 0, 'must be >= 0 (0: about 1000 agent steps a call)'),
    ('run.batch_length', lambda x: x > 0, 'must be positive'),
    ('run.envs', lambda x: x >= 1, 'must be >= 1'),
    ('run.eval_envs', lambda x: x >= 1, 'must be >= 1'),
    ('run.eval_every', lambda x: x >= 0, 'must be >= 0'),
    ('run.eval_episodes', lambda x: x >= 0, 'must be >= 0'),
    ('run.train_ratio', lambda x: x >= 0, 'must be >= 0'),
    ('run.prefill', lambda x: x >= 0, 'must be >= 0'),
    ('run.pretrain', lambda x: x >= 0, 'must be >= 0'),
    ('run.log_every', lambda x: x >= 0, 'must be >= 0'),
    ('run.report_every', lambda x: x >= 0, 'must be >= 0'),
    ('run.save_every', lambda x: x >= 0, 'must be >= 0'),
    ('run.xla_flags', lambda x: all(f.startswith('--xla_') for f in x.split()),
     "must be XLA flags separated by spaces ('--xla_name=value ...')"),
    ('run.keep_checkpoints', lambda x: x >= 1, 'must be >= 1'),
    ('run.max_nonfinite', lambda x: x >= 1, 'must be >= 1'),
    ('run.precision', lambda x: x in PRECISIONS,
     'must be one of ' + ', '.join(PRECISIONS)),
    ('env.name', lambda x: bool(x), 'must not be empty'),
    ('env.action_repeat', lambda x: x >= 1, 'must be >= 1'),
    ('env.time_limit', lambda x: x >= 0, 'must be >= 0'),
    ('env.size', lambda x: len(x) == 2 and all(
        isinstance(v, int) and v > 0 for v in x), 'must be two positive ints'),
    ('replay.capacity', lambda x: x > 0, 'must be positive'),
    ('replay.chunk', lambda x: x > 0, 'must be positive'),
)


def validate(config, validators: Sequence[Callable] = ()):
  """Light cross-field checks; raises ConfigError with one line.

  Checks every field's type against its annotation, the run/env/replay
  ranges above (where those fields exist), then each extra validator
  `function(config)`, which raises ConfigError or ValueError.
  """
  check_types(config)
  for key, predicate, requirement in _CHECKS:
    try:
      value = get(config, key)
    except ConfigError:
      continue  # this schema has no such field
    if not predicate(value):
      raise ConfigError(f'invalid config: {key} {requirement}, got {value!r}')
  if get_or(config, 'run.eval_only', False) and not get_or(
      config, 'run.eval_episodes', 1):
    raise ConfigError('invalid config: run.eval_only needs '
                      'run.eval_episodes >= 1')
  for validator in validators:
    try:
      validator(config)
    except ConfigError:
      raise
    except ValueError as e:
      raise ConfigError(f'invalid config: {e}') from None
  return config


def get_or(config, key, default):
  try:
    return get(config, key)
  except ConfigError:
    return default


# --- Dicts, YAML, console --------------------------------------------------

def to_dict(config) -> dict:
  """Nested plain dicts of the init fields, in field order (tuples kept)."""
  def as_dict(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
      return {f.name: as_dict(getattr(value, f.name))
              for f in init_fields(value)}
    if isinstance(value, dict):
      return {k: as_dict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return type(value)(as_dict(v) for v in value)
    return value
  return as_dict(config)


def _plain(value):
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def save(config, path: str) -> None:
  """Writes the fully resolved config as YAML (atomically)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  text = yaml.safe_dump(_plain(to_dict(config)), sort_keys=False,
                        default_flow_style=None)
  temporary = f'{path}.tmp{os.getpid()}'
  with open(temporary, 'w') as file:
    file.write(text)
  os.replace(temporary, path)


def load(path: str, schema_type):
  """Reads a YAML written by `save` back into `schema_type`."""
  try:
    with open(path) as file:
      data = yaml.safe_load(file)
  except FileNotFoundError:
    raise ConfigError(f'config file not found: {path}') from None
  except yaml.YAMLError as e:
    line = getattr(getattr(e, 'problem_mark', None), 'line', None)
    where = f' (line {line + 1})' if line is not None else ''
    raise ConfigError(f'{path}: not valid YAML{where}') from None
  try:
    return from_dict(data if data is not None else {}, schema_type)
  except ConfigError as e:
    raise ConfigError(f'{path}: {e}') from None


def format(config, indent: str = '') -> str:  # noqa: A001 (module API name)
  """A readable multi-line dump: `key: value`, sections indented."""
  fields = init_fields(config)
  width = max((len(f.name) for f in fields), default=0) + 1
  lines = []
  for field in fields:
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      lines.append(f'{indent}{field.name}:')
      lines.append(format(value, indent + '  '))
    else:
      shown = value if isinstance(value, str) and value else repr(value)
      lines.append(f'{indent}{(field.name + ":").ljust(width)} {shown}')
  return '\n'.join(lines)


# --- Command line ----------------------------------------------------------

class _ArgumentParser(argparse.ArgumentParser):

  def error(self, message):
    """One line on stderr and exit code 2, as for any bad config."""
    message = ' '.join(str(message).split())
    self.exit(2, f'{self.prog}: error: {message}\n')


def make_parser(presets: Presets, prog: Optional[str] = None):
  """The shared flags of every entry point."""
  parser = _ArgumentParser(
      prog=prog, allow_abbrev=False,
      description='Presets apply in order: --config, --suite (inferred from '
                  '--env), --size; then --set overrides; then the flags.',
      epilog=f"algorithms: {', '.join(presets.algos)}; "
             f"suites: {', '.join(presets.suites)}; "
             f"sizes: {', '.join(presets.sizes)}")
  parser.add_argument('--config', metavar='ALGO', help='algorithm preset')
  parser.add_argument('--env', help='environment name, e.g. atari_pong')
  parser.add_argument('--suite', help='suite preset (default: from --env)')
  parser.add_argument('--size', help='size preset (default: '
                      f'{presets.default_size or "none"})')
  parser.add_argument('--set', action='append', default=[],
                      metavar='KEY=VALUE', help='override a field, e.g. '
                      'run.train_ratio=256 (repeatable)')
  parser.add_argument('--logdir', help='run directory '
                      '(default: runs/{algo}/{env}/seed{seed})')
  parser.add_argument('--seed', help='run.seed')
  parser.add_argument('--steps', help='run.steps (agent steps)')
  parser.add_argument('--eval_only', action='store_const', const=True,
                      default=None, help='only evaluate a checkpoint')
  parser.add_argument('--from_checkpoint', metavar='DIR',
                      help='checkpoint directory to start from')
  parser.add_argument('--loop', choices=LOOPS,
                      help="run.loop: 'device' compiles the whole loop (JAX-native envs)")
  parser.add_argument('--seeds', help='run.seeds: agents vmapped in one program (--loop '
                      'device; run directories seed<N>/ under --logdir)')
  parser.add_argument('--verbose', action='store_const', const=True, default=None,
                      help='run.verbose: print every metric on each log line, not the short line')
  return parser


def requested_size(argv: Optional[Sequence[str]], presets: Presets) -> str:
  """The size preset the command line asks for (`--size`, else the default)."""
  args, _ = make_parser(presets).parse_known_args(sys.argv[1:] if argv is None else list(argv))
  return args.size or presets.default_size


def parse(argv: Optional[Sequence[str]], presets: Presets,
          prog: Optional[str] = None):
  """Command line -> validated config; bad input exits 2 with one line."""
  parser = make_parser(presets, prog)
  args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
  try:
    return compose(
        presets, args.config, suite=args.suite, size=args.size, env=args.env,
        overrides=args.set, logdir=args.logdir, seed=args.seed,
        steps=args.steps, eval_only=args.eval_only,
        from_checkpoint=args.from_checkpoint, loop=args.loop, seeds=args.seeds,
        verbose=args.verbose)
  except ConfigError as e:
    parser.error(str(e))

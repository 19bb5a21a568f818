"""The command line every algorithm's `main.py` shares: parse, check, fit the size, run.

`run_main(argv, presets, prog, make_agent)` parses the shared flags (`common.run.config`),
joins a multi-host run (`common.run.devices`), turns command-line misuse into one line with
exit code 2 before any work, checks that the model fits the device before compiling
(`fit_size`, `common.run.memory`), and hands over to `common.run.train_loop.run` (or, with
`--loop device`, `common.run.device_loop.run`).
"""
import argparse
import os
import sys

import jax

from common import envs as envs_lib
from common.run import checkpoint as checkpoint_lib
from common.run import config as config_lib
from common.run import device_loop
from common.run import devices as devices_lib
from common.run import train_loop


def split_stage(argv, stages, prog):
  """(`--stage` value, the other arguments) of a staged pipeline's command line; 'all' by
  default. An unknown stage is one error line and exit code 2."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument('--stage', default='all')
  args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
  if args.stage not in tuple(stages) + ('all',):
    print(f'{prog}: error: --stage {args.stage!r} is not one of '
          f'{", ".join(tuple(stages) + ("all",))}', file=sys.stderr)
    raise SystemExit(2)
  return args.stage, rest


def check_run_directories(run_config):
  """ValueError (one line) if `eval_only` has no checkpoint to read, or if the run directory
  cannot be written (checked in that order, so a mistyped --logdir is not created)."""
  logdir = run_config.logdir
  if run_config.eval_only:
    source = run_config.from_checkpoint or os.path.join(logdir, 'checkpoints')
    directory, step = checkpoint_lib.resolve(source)
    steps = checkpoint_lib.list_steps(directory)
    if not steps or (step is not None and step not in steps):
      raise ValueError(f'--eval_only: no checkpoint in {source}; pass --from_checkpoint '
                       'RUN/checkpoints of a trained run.')
  try:
    os.makedirs(logdir, exist_ok=True)
    probe = os.path.join(logdir, f'.write_test{os.getpid()}')
    with open(probe, 'w'):
      pass
    os.remove(probe)
  except OSError as error:
    raise ValueError(f'--logdir {logdir}: cannot write there ({error.strerror}); pass a '
                     'writable directory.') from None


COMPILE_CACHE = os.path.expanduser('~/.cache/worldmodels_jax/xla')
# Share of a device's memory a train step may plan to use: the rest is headroom for the
# allocator, the policy and (on a CPU) the replay.
MEMORY_SHARE = 0.9


def fit_size(argv, presets, prog, make_agent, stream=None):
  """`fit(config, obs_space, act_space) -> config` for `run`: the train step's estimated
  peak memory (`common.run.memory`, from its jaxpr, before compiling) against the device's.

  With `--size auto` (or no --size where the default is auto) the pick is announced in one
  line and, where it does not fit, the next smaller of `presets.auto_sizes` is tried. A size
  that does not fit otherwise ends the run with one line and exit code 2.
  """
  from common.run import memory  # pylint: disable=g-import-not-at-top
  auto = config_lib.requested_size(argv, presets) == 'auto'
  stream = stream or sys.stdout

  def need(config, obs_space, act_space):
    agent = make_agent(config, obs_space, act_space)
    length = config.run.batch_length + agent.replay_context
    return memory.train_step_bytes(agent, obs_space, act_space, config.run.batch_size, length)

  def fit(config, obs_space, act_space):
    have = memory.device_bytes()
    device = f'{jax.default_backend()} device {jax.local_devices()[0].device_kind!r}'
    candidates = [config]
    if auto and config.size in presets.auto_sizes:
      smaller = presets.auto_sizes[:presets.auto_sizes.index(config.size)]
      candidates += [config_lib.parse(list(argv) + ['--size', name], presets, prog)
                     for name in reversed(smaller)]
    for candidate in candidates:
      needed = need(candidate, obs_space, act_space)
      if needed <= MEMORY_SHARE * have:
        if auto:
          print(f'--size auto: {candidate.size} on this {device} (a train step needs about '
                f'{memory.gib(needed)} of {memory.gib(have)}); pass --size to choose.',
                file=stream)
        return candidate
    print(f'{prog}: error: size {candidate.size!r} with batch {candidate.run.batch_size} x '
          f'{candidate.run.batch_length} needs about {memory.gib(needed)} for a train step, but '
          f'the {device} has {memory.gib(have)}; pick a smaller --size or '
          '--set run.batch_size=...', file=sys.stderr)
    raise SystemExit(2)
  return fit


def run_main(argv, presets, prog, make_agent):
  """The body of every algorithm's `main.py`: parse the shared flags, then `run`.

  Compiled programs go to a persistent cache, so a resumed run starts in seconds. An agent
  that rejects the spaces (ValueError) or a model that does not fit in device memory ends
  the run with one line naming the problem, not a traceback (exit code 2 when the estimate
  says so before compiling, 1 when the device runs out anyway).
  """
  argv = sys.argv[1:] if argv is None else list(argv)
  # Several hosts join before any device is touched; `--size auto` asks for the backend, so
  # the run flags are read from a parse without a size preset first.
  try:
    run_flags = config_lib.parse(argv + ['--size', ''], presets, prog).run
    devices_lib.add_xla_flags(run_flags.xla_flags)
    devices_lib.initialize_distributed(run_flags)
  except ValueError as error:
    print(f'{prog}: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  config = config_lib.parse(argv, presets, prog=prog)
  try:  # command-line misuse: one line, exit code 2, before any work
    envs_lib.check_name(config.env)
    device_loop.check(config)
    devices_lib.Placement(config.run)
    check_run_directories(config.run)
  except ValueError as error:
    print(f'{prog}: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', COMPILE_CACHE)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)

  def checked_make_agent(config, obs_space, act_space):
    try:
      return make_agent(config, obs_space, act_space)
    except ValueError as error:
      raise SystemExit(f'{prog}: {error}') from None

  fit = None if config.run.eval_only else fit_size(
      argv, presets, prog, checked_make_agent)
  try:
    if config.run.loop == 'device':
      return device_loop.run(checked_make_agent, config, fit=fit)
    return train_loop.run(checked_make_agent, config, fit=fit)
  except jax.errors.JaxRuntimeError as error:
    if 'RESOURCE_EXHAUSTED' not in str(error):
      raise
    raise SystemExit(
        f'{prog}: size {config.size!r} with batch {config.run.batch_size} x '
        f'{config.run.batch_length} does not fit in device memory; pick a smaller --size or '
        '--set run.batch_size=...') from None

"""Model-size presets of the Dreamer agent: `--size size1m` ... `size400m`, `debug`, `auto`.

Sizes (DreamerV3, Table: model sizes; 32 stochastic variables, 8 GRU blocks,
CNN multipliers [2, 3, 4, 4], kernel 5):

  | preset   | deter | hidden | classes | CNN depth | MLP units |
  |----------|-------|--------|---------|-----------|-----------|
  | size1m   |   512 |     64 |       4 |         4 |        64 |
  | size12m  |  2048 |    256 |      16 |        16 |       256 |
  | size25m  |  3072 |    384 |      24 |        24 |       384 |
  | size50m  |  4096 |    512 |      32 |        32 |       512 |
  | size100m |  6144 |    768 |      48 |        48 |       768 |
  | size200m |  8192 |   1024 |      64 |        64 |      1024 |  (default)
  | size400m | 12288 |   1536 |      96 |        96 |      1536 |
  | debug    |    64 |     32 | 4 (x4 stoch) |     4 |        32 |  (CPU tests)

A size preset sets only widths (V1 keeps its Gaussian RSSM); `debug` also shrinks the schedule.
`auto`, the default, picks per device and suite; whether it fits is checked once the env's spaces
are known (common/run/cli.py `fit_size`).
"""
import dataclasses

from common.run import config as config_lib
from dreamer.config_types import Config

_replace = config_lib.replace
DMC_SUITES = ('dmc_vision', 'dmc_proprio')  # V3's size12m; V1 and V2 follow their DMC setups


def _size(deter, hidden, classes, depth, units, stoch=32):
  def preset(config: Config) -> Config:
    if not config.agent.rssm.classes:  # a Gaussian RSSM (V1) stays Gaussian
      classes_ = 0
    else:
      classes_ = classes
    return _replace(config, **{
        'agent.rssm.deter': deter, 'agent.rssm.hidden': hidden,
        'agent.rssm.stoch': stoch, 'agent.rssm.classes': classes_,
        'agent.encoder.depth': depth, 'agent.encoder.mlp_units': units,
        'agent.decoder.depth': depth, 'agent.decoder.mlp_units': units,
        'agent.reward_head.units': units, 'agent.continue_head.units': units,
        'agent.actor.units': units, 'agent.critic.units': units})
  return preset


def _named(name, preset):
  def named(config: Config) -> Config:
    return dataclasses.replace(preset(config), size=name)
  named.__name__ = name
  return named


_SIZE_TABLE = {
    'size1m': (512, 64, 4, 4, 64),
    'size12m': (2048, 256, 16, 16, 256),
    'size25m': (3072, 384, 24, 24, 384),
    'size50m': (4096, 512, 32, 32, 512),
    'size100m': (6144, 768, 48, 48, 768),
    'size200m': (8192, 1024, 64, 64, 1024),
    'size400m': (12288, 1536, 96, 96, 1536),
}

SIZES = {name: _named(name, _size(*row)) for name, row in _SIZE_TABLE.items()}


def debug(config: Config) -> Config:
  """A tiny model and schedule that trains a few hundred steps in seconds on a CPU."""
  config = _size(deter=64, hidden=32, classes=4, depth=4, units=32, stoch=4)(config)
  return _replace(config, size='debug', **{
      'agent.rssm.blocks': 4,
      'agent.encoder.mlp_layers': 1, 'agent.decoder.mlp_layers': 1,
      'agent.actor.layers': 1, 'agent.critic.layers': 1,
      'agent.reward_head.layers': 1, 'agent.continue_head.layers': 1,
      'agent.report_sequences': 2,
      'run.batch_size': 4, 'run.batch_length': 16, 'run.envs': 1, 'run.eval_envs': 1,
      'run.train_ratio': 32.0, 'run.prefill': 100, 'run.train_starts': 4 * 16,
      'run.eval_episodes': 1,
      'run.log_every': 5.0, 'run.report_every': 30.0, 'run.save_every': 30.0,
      'replay.capacity': 100_000})


SIZES['debug'] = debug


# Presets `--size auto` may pick, smallest first; it falls back through them when the
# paper's size does not fit the device (common/run/cli.py `fit_size`).
AUTO_SIZES = ('size1m', 'size12m', 'size25m', 'size50m', 'size100m', 'size200m')


def auto(config: Config) -> Config:
  """The default size: on an accelerator the paper's (size12m on DMC, 2411f7d `dmc_proprio`,
  `dmc_vision`; else size200m); on a CPU size1m, the largest preset that trains at a usable
  speed there (BENCHMARKS.md: 0.26 size1m updates/s on 2 cores, size12m 0.035).

  DreamerV1/V2 keep their papers' sizes (set by the algorithm and `_algo_suite`). Whether
  the pick fits the device's memory is checked once the env's spaces are known.
  """
  if config.algo in ('dreamerv1', 'dreamerv2'):
    return config
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() == 'cpu':
    name = 'size1m'
  else:
    name = 'size12m' if config.suite in DMC_SUITES else 'size200m'
  return SIZES[name](config)

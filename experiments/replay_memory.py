"""Replay memory per million steps of DreamerV3, with and without the replay context latents.

  python -m experiments.replay_memory [--sizes size1m size12m size200m]

For each size, a real `Replay` is filled with one chunk of steps shaped as the agent stores
them (the env's observations, the action, and the policy's latent entries: deter as bfloat16
bits, stoch as uint8 class indices), and its memory is scaled to 1M steps. Env spaces:
Atari (96x96x1 images, 18 actions) and DMC vision (64x64x3 images, 6-dim actions).
"""
import argparse

import jax
import numpy as np

from common.envs.spaces import Space
from common.replay.host import Replay, ReplayConfig
from common.run import config as config_lib
from dreamer import agent as agent_lib
from dreamer import configs

ENVS = {
    'atari': ('atari_pong', {'image': Space(np.uint8, (96, 96, 1))}, Space(np.int32, (), 0, 17)),
    'dmc_vision': ('dmc_walker_walk', {'image': Space(np.uint8, (64, 64, 3))},
                   Space(np.float32, (6,), -1, 1)),
}
FLAGS = {'reward': Space(np.float32, ()), 'is_first': Space(bool, ()),
         'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}


def bytes_per_step(size, env, context=True, chunk=1024):
  """Replay bytes per stored step for `size` on `env` (one full chunk, as replay holds them)."""
  name, obs, act = ENVS[env]
  config = config_lib.parse(['--config', 'dreamerv3', '--env', name, '--size', size],
                            configs.PRESETS)
  agent = agent_lib.make_agent(config, {**obs, **FLAGS}, act)
  step = {key: np.zeros(space.shape, space.dtype) for key, space in {**obs, **FLAGS}.items()}
  step['action'] = np.zeros(act.shape, act.dtype)
  if context:
    entries = jax.device_get(agent.policy_entries(agent.init_policy_carry(1)))
    step.update({key: value[0] for key, value in entries.items()})
  replay = Replay(ReplayConfig(capacity=chunk, chunk=chunk))
  for _ in range(chunk):
    replay.add(step)
  return replay.stats()['bytes'] / chunk, {k: v.nbytes for k, v in step.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.replay_memory')
  parser.add_argument('--sizes', nargs='+', default=['size1m', 'size12m', 'size200m'])
  args = parser.parse_args(argv)
  print('| env | size | deter | context bytes/step | GB per 1M steps without context | '
        'with context | increase |')
  print('|---|---|---|---|---|---|---|')
  for env in ENVS:
    for size in args.sizes:
      plain, _ = bytes_per_step(size, env, context=False)
      full, parts = bytes_per_step(size, env, context=True)
      context = sum(v for k, v in parts.items() if k.startswith('context/'))
      deter = parts['context/deter'] // 2
      print(f'| {env} | {size} | {deter} | {context:,} | {plain * 1e6 / 2 ** 30:.2f} | '
            f'{full * 1e6 / 2 ** 30:.2f} | {full / plain:.2f}x |')


if __name__ == '__main__':
  main()

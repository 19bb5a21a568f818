"""A trained run's config, agent and latest checkpoint, for the scripts that study one."""
import os
import sys
import types

import jax

from common.run import checkpoint as checkpoint_lib
from common.run import config as config_lib


def load(logdir: str, prog: str) -> types.SimpleNamespace:
  """(config, agent, state, meta, obs_space, act_space, algo) of the run in `logdir` (a
  `dreamer.main` or `planet.main` run directory); a missing run or checkpoint is one line
  naming `prog`, exit code 2."""
  path = os.path.join(logdir, 'config.yaml')
  if not os.path.exists(path):
    print(f'{prog}: error: no config.yaml in {logdir}; pass a run directory of dreamer.main '
          'or planet.main.', file=sys.stderr)
    raise SystemExit(2)
  with open(path) as file:
    algo = next((line.split(':', 1)[1].strip() for line in file if line.startswith('algo:')), '')
  if algo == 'planet':
    from planet import agent as agent_module, configs  # pylint: disable=g-import-not-at-top
  else:
    from dreamer import agent as agent_module, configs  # pylint: disable=g-import-not-at-top
  config = config_lib.load(path, configs.Config)
  from common import envs  # pylint: disable=g-import-not-at-top
  env = envs.make_env(config.env)
  obs_space, act_space = env.obs_space, env.act_space
  env.close()
  agent = agent_module.make_agent(config, obs_space, act_space)
  directory, step = checkpoint_lib.resolve(os.path.join(logdir, 'checkpoints'))
  checkpointer = checkpoint_lib.Checkpointer(directory)
  target = {'agent': agent.init(jax.random.PRNGKey(0)), 'policy_key': jax.random.PRNGKey(0)}
  try:
    restored, meta = checkpointer.restore(target, step)
  except FileNotFoundError:
    print(f'{prog}: error: no checkpoint in {directory} yet; train longer or pass another '
          '--logdir.', file=sys.stderr)
    raise SystemExit(2) from None
  finally:
    checkpointer.close()
  return types.SimpleNamespace(config=config, agent=agent, state=restored['agent'], meta=meta,
                               obs_space=obs_space, act_space=act_space, algo=algo)

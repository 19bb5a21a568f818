"""World Models pipeline (Ha & Schmidhuber, 2018): `python -m world_models_ha.main --env car_racing --stage all`.

Stages, each resumable (a finished stage is skipped, an interrupted one continues from its last
checkpoint), all writing into the run directory:
  collect     random-policy rollouts          -> rollouts/<id>.npz
  vae         train V on the frames           -> vae/ (checkpoints)
  encode      VAE posteriors of every frame   -> series.npz
  mdnrnn      train M on the encoded series   -> mdnrnn/
  controller  CMA-ES on C (real env or dream) -> controller/
  evaluate    C in the real environment       -> eval.json, scores.jsonl
"""
import os
import sys

import jax
import numpy as np

from common.run import cli
from common.run import config as config_lib
from common.run import devices
from common.run import host_sync
from common.run.logging import Logger
from world_models_ha import configs, models, rollouts
from world_models_ha.c_stages import evaluate, train_controller
from world_models_ha.vm_stages import encode, train_mdnrnn, train_vae

STAGES = ('collect', 'vae', 'encode', 'mdnrnn', 'controller', 'evaluate')


def collect(config, logger):
  directory = models.run_path(config, 'rollouts')
  wanted = config.agent.collect.episodes
  done = {int(os.path.basename(p)[:-4]) for p in rollouts.list_episodes(directory)}
  missing = [i for i in range(wanted) if i not in done]
  if not missing:
    print(f'collect: {wanted} rollouts already in {directory}; skipped')
    return
  print(f'collect: {len(missing)} random rollouts -> {directory}')
  seeds = [config.run.seed * 1_000_003 + i for i in missing]
  policy = rollouts.RandomPolicy(config.env.name, config.run.envs, config.agent.collect.hold,
                                 config.run.seed + len(done))

  def on_episode(index, data):
    rollouts.save_episode(directory, missing[index], data)
    logger.episode(missing[index], data['reward'].sum(), len(data['reward']))

  with rollouts.EnvPool(config.env.name, config.run.envs, config.env.time_limit,
                        config.env.parallel) as pool:
    rollouts.run_episodes(pool, policy, np.zeros(len(missing)), seeds, record=True,
                          on_episode=on_episode)
  logger.write(len(missing), fps=False)


# The stages with a gradient step, which several hosts train data parallel.
MULTIHOST_STAGES = ('vae', 'mdnrnn')
STAGE_FUNCTIONS = {'collect': collect, 'vae': train_vae, 'encode': encode,
                   'mdnrnn': train_mdnrnn, 'controller': train_controller,
                   'evaluate': evaluate}


def main(argv=None):
  stage, rest = cli.split_stage(argv, STAGES, 'world_models_ha.main')
  config = config_lib.parse(rest, configs.PRESETS, prog='world_models_ha.main')
  stages = STAGES if stage == 'all' else (stage,)
  if config.run.eval_only:
    stages = ('evaluate',)
  try:
    if devices.configured_processes(config.run) > 1 and set(stages) - set(MULTIHOST_STAGES):
      raise ValueError(f'several hosts (run.processes) train the {" and ".join(MULTIHOST_STAGES)} '
                       'stages only (--stage vae, --stage mdnrnn); run the others on one host.')
    devices.initialize_distributed(config.run)
  except ValueError as error:
    print(f'world_models_ha.main: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  os.makedirs(config.run.logdir, exist_ok=True)
  if jax.process_index() == 0:
    config_lib.save(config, models.run_path(config, 'config.yaml'))
  # The other hosts of a multi-host run log apart, as the shared train loop's do.
  logger = Logger(host_sync.host_dir(config.run.logdir), verbose=config.run.verbose)
  try:
    for stage in stages:
      STAGE_FUNCTIONS[stage](config, logger)
  finally:
    logger.close()


if __name__ == '__main__':
  main()

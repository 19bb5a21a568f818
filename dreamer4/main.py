"""Dreamer 4 from offline data (Hafner, Yan and Lillicrap 2025):
`python -m dreamer4.main --env gymnax_Breakout-MinAtar --set run.offline_replay=DIR`.

DIR is a replay directory written by any run of the suite (for example a DreamerV3 run's
`replay/`). Stages, each resumable and skipped once finished; `--stage X` runs every stage up
to X (default: all):
  tokenizer, dynamics, finetune (phase 2: behaviour cloning and reward heads), imagine
  (phase 3: PMPO in imagination), evaluate (the BC and the imagination-trained policies in the
  real env -> eval.json, with the dataset's own statistics).
"""
import json
import os
import sys

import jax

from common.run import cli
from common.run import config as config_lib
from common.run.logging import Logger
from dreamer4 import configs, evaluate as evaluate_lib, stages

STAGES = ('tokenizer', 'dynamics', 'finetune', 'imagine', 'evaluate')


def run(config, logger, last):
  dataset = stages.load_dataset(config)
  models = stages.Models(config, dataset.frames[0].shape[1:])
  params = models.init(jax.random.PRNGKey(config.run.seed))
  print(f'dreamer4: {dataset.steps} steps, {len(dataset.returns)} episodes from '
        f'{config.run.offline_replay}')
  trainers = (('tokenizer', stages.train_tokenizer), ('dynamics', stages.train_dynamics),
              ('finetune', stages.train_finetune), ('imagine', stages.train_imagination))
  for name, train in trainers[:STAGES.index(last) + 1]:
    params = train(config, logger, models, dataset, params)
  if last == 'evaluate':
    episodes, results = config.run.eval_episodes, {'dataset': dataset.stats()}
    for policy, heads in (('bc', params['prior']), ('agent', params['heads'])):
      scores = evaluate_lib.evaluate(config, models, params, heads, episodes,
                                     config.run.seed + 1000)
      results[policy] = {'mean': sum(scores) / len(scores), 'episodes': len(scores),
                         'scores': scores}
      print(f'evaluate: {policy} {results[policy]["mean"]:.3f} over {len(scores)} episodes')
    with open(os.path.join(config.run.logdir, 'eval.json'), 'w') as file:
      json.dump(results, file, indent=1)
  return params


def main(argv=None):
  stage, rest = cli.split_stage(argv, STAGES, 'dreamer4.main')
  config = config_lib.parse(rest, configs.PRESETS, prog='dreamer4.main')
  last = STAGES[-1] if stage == 'all' else stage
  os.makedirs(config.run.logdir, exist_ok=True)
  config_lib.save(config, os.path.join(config.run.logdir, 'config.yaml'))
  logger = Logger(config.run.logdir, verbose=config.run.verbose)
  try:
    run(config, logger, last)
  except FileNotFoundError as error:
    print(f'dreamer4.main: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  finally:
    logger.close()


if __name__ == '__main__':
  main()

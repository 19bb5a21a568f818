"""Learning-test figure shared by the slow tests: the best average over consecutive episodes."""
import numpy as np

from experiments import export


def best_average(logdir, episodes, after_step=0):
  """Best mean training return over `episodes` consecutive episodes of a run (those ending
  after `after_step`); the mean of all of them when fewer finished."""
  returns = np.array([record['score'] for record in export.read_scores(logdir)
                      if record['step'] > after_step])
  assert returns.size, f'{logdir}: no episode finished after step {after_step}'
  return max(returns[i:i + episodes].mean()
             for i in range(max(1, len(returns) - episodes + 1))), len(returns)

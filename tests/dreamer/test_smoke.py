"""`python -m dreamer.main` end to end on CPU with the debug size: finite losses, checkpoint, resume."""
import json
import os

import numpy as np
import pytest

from tests.dreamer.cli import checkpoint_steps, run_main



def _train_metrics(logdir):
  lines = [json.loads(line) for line in open(os.path.join(logdir, 'metrics.jsonl'))]
  return [line for line in lines if any(k.startswith('train/') for k in line)]


@pytest.mark.parametrize('env, steps, extra, resume', [
    ('gym_CartPole-v1', 300, (), True),
    # DMC from proprioception (images are covered by tests/dreamer/test_agent.py).
    ('dmc_cartpole_balance', 120, ('--suite', 'dmc_proprio', '--set', 'env.parallel=none',
                                   '--set', 'env.time_limit=50'), False),
])
def test_train_checkpoint_and_resume(tmp_path, env, steps, extra, resume):
  run_main(tmp_path, 'dreamerv3', env, steps, *extra)
  metrics = _train_metrics(tmp_path)
  assert metrics, 'no train metrics written'
  for key in ('train/loss', 'train/model_loss', 'train/policy_loss', 'train/value_loss'):
    assert np.isfinite(metrics[-1][key]), key
  assert metrics[-1]['train/nonfinite'] == 0
  updates = metrics[-1]['run/updates']
  assert updates > 0
  assert checkpoint_steps(tmp_path)[-1] >= steps
  assert (tmp_path / 'config.yaml').exists()
  if not resume:  # resuming is suite-independent; checked once to fit the time budget
    return
  # Re-running the same command on the run directory resumes and continues.
  out = run_main(tmp_path, 'dreamerv3', env, steps + 40, *extra)
  assert 'Resumed from checkpoint' in out
  assert checkpoint_steps(tmp_path)[-1] >= steps + 40
  assert _train_metrics(tmp_path)[-1]['run/updates'] > updates

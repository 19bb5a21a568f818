"""DreamerV3 learning threshold (issue 4, item 6); slow: run on purpose with `pytest -m slow`."""
import json
import os

import numpy as np
import pytest

from dreamer import main as dreamer_main


@pytest.mark.slow
def test_dreamerv3_learns_cartpole(tmp_path):
  """Small DreamerV3 reaches an average return >= 400 on CartPole-v1 within 20k env steps."""
  dreamer_main.main([
      '--config', 'dreamerv3', '--env', 'gym_CartPole-v1', '--size', 'size1m',
      '--steps', '20000', '--logdir', str(tmp_path), '--set', 'run.log_every=60',
      '--set', 'run.save_every=100000', '--set', 'run.report_every=100000'])
  scores = [json.loads(line) for line in open(os.path.join(tmp_path, 'scores.jsonl'))]
  assert scores, 'no episode finished'
  returns = np.array([line['score'] for line in scores])
  best = max(returns[i:i + 10].mean() for i in range(max(1, len(returns) - 9)))
  assert best >= 400, f'best 10-episode average return {best:.1f} < 400'

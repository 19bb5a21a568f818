"""Slow learning test: PlaNet beats the random policy on dmc_cartpole_balance (pixels)."""
import numpy as np
import pytest

from planet import main as planet_main

# Random actions score about 170-290 on cartpole_balance with action repeat 8 (see the
# debug run's prefill episodes); a model that balances at all gets several hundred more.
RANDOM_SCORE = 300.0


@pytest.mark.slow
def test_planet_beats_random_on_cartpole_balance(tmp_path):
  summary = planet_main.main([
      '--env', 'dmc_cartpole_balance', '--size', 'debug', '--logdir', str(tmp_path / 'run'),
      '--steps', '6000', '--set', 'run.eval_every=2000', '--set', 'run.eval_episodes=2',
      '--set', 'agent.planner.horizon=12', '--set', 'agent.planner.candidates=300',
      '--set', 'agent.planner.top_k=30', '--set', 'agent.planner.iterations=5',
      '--set', 'agent.rssm.deter=100', '--set', 'agent.rssm.hidden=100',
      '--set', 'agent.encoder.depth=16', '--set', 'agent.decoder.depth=16',
      '--set', 'run.batch_size=16', '--set', 'run.batch_length=32',
      '--set', 'run.train_ratio=256', '--set', 'run.prefill=630', '--set', 'env.parallel=none'])
  scores = summary['eval_scores']
  assert scores and np.mean(scores) > 2 * RANDOM_SCORE, scores

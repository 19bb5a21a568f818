"""Slow learning test: PlaNet beats the random policy on dmc_cartpole_balance (pixels)."""
import pytest

from planet import main as planet_main
from tests.learning import best_average

# Random actions (the 5 seed episodes, action repeat 8) score 172-322, mean 251.
RANDOM_SCORE = 251.0
SEED_STEPS = 630      # 5 seed episodes of 125 agent steps + the reset step
PLANNED_EPISODES = 60  # ~60k environment steps after the seed episodes


@pytest.mark.slow
def test_planet_beats_random_on_cartpole_balance(tmp_path):
  """PlaNet at the `small` size (the paper's planner and schedule: 5 seed episodes, then C = 100
  updates per planned episode) doubles the random score within 60 planned episodes.

  Not measured to pass yet. The budget is set from the published DreamerV3 dmc_vision curves
  (reference_scores, 10 seeds): cartpole_balance averages 265 over the first 20k environment
  steps (random level), 427 over 20-40k and 628 over 40-60k, so a smaller budget cannot show
  learning. A 15k-step run of this command on the 2-core CPU (BENCHMARKS.md) stayed at random
  level, as those curves predict; 60 episodes are ~9 CPU hours, a GPU task's job.
  """
  steps = SEED_STEPS + PLANNED_EPISODES * 126
  planet_main.main(['--env', 'dmc_cartpole_balance', '--size', 'small', '--steps', str(steps),
                    '--logdir', str(tmp_path), '--set', 'run.eval_every=0'])
  best, planned = best_average(tmp_path, 5, after_step=SEED_STEPS)
  assert planned >= PLANNED_EPISODES - 1, planned
  assert best >= 2 * RANDOM_SCORE, f'best 5-episode average {best:.1f} < {2 * RANDOM_SCORE}'

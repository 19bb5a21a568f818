"""`python -m dreamer.main` end to end on CPU with the debug size: finite losses, checkpoint, resume."""
import pytest

from tests.dreamer.cli import check_train_and_resume


@pytest.mark.parametrize('env, steps, extra, resume', [
    ('gym_CartPole-v1', 300, (), True),
    # DMC from proprioception (images are covered by tests/dreamer/test_agent.py).
    ('dmc_cartpole_balance', 120, ('--suite', 'dmc_proprio', '--set', 'env.parallel=none',
                                   '--set', 'env.time_limit=50'), False),
])
def test_train_checkpoint_and_resume(tmp_path, env, steps, extra, resume):
  check_train_and_resume(tmp_path, 'dreamerv3', env, steps, extra, resume)

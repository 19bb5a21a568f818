"""PlaNet's bug-or-budget checks: the true-simulator model and the statistics."""
import numpy as np

from experiments import diagnose_planet


def test_true_model_scores_candidates_as_the_env_steps_them():
  """Replaying a candidate in the planning copy of the physics gives the rewards the acting
  env gives for the same actions from the same state (action scaling and repeat included)."""
  model = diagnose_planet.TrueModel('cartpole_swingup', action_repeat=3, seed=1)
  state = model.reset()
  for _ in range(4):   # move away from the reset state
    model.act(np.array([0.7]))
  state = model.env.physics.get_state().copy()
  actions = np.random.default_rng(0).uniform(-1, 1, (2, 5, 1))
  planned = model.rewards(state, actions)
  for c in range(2):
    with model.env.physics.reset_context():
      model.env.physics.set_state(state)
    got = [model.act(action)[0] for action in actions[c]]
    np.testing.assert_allclose(planned[c], got, rtol=1e-5, atol=1e-6)


def test_batched_cartpole_reward_is_the_tasks():
  """The batched rollout scores candidates as the Python loop over dm_control's task does."""
  fast = diagnose_planet.TrueModel('cartpole_balance', action_repeat=4, seed=2)
  slow = diagnose_planet.TrueModel('cartpole_balance', action_repeat=4, seed=2)
  slow.fast = False
  assert fast.fast
  state = fast.reset()
  for _ in range(3):
    fast.act(np.array([-0.9]))
  state = fast.env.physics.get_state().copy()
  actions = np.random.default_rng(3).uniform(-1, 1, (3, 6, 1))
  np.testing.assert_allclose(fast.rewards(state, actions), slow.rewards(state, actions),
                             rtol=1e-5, atol=1e-6)


def test_true_model_planner_runs_the_agents_cem():
  score, steps, actions = diagnose_planet.true_model_episode(
      'dmc_cartpole_balance', action_repeat=8, horizon=3, candidates=6, top_k=2, iterations=2,
      steps=2)
  assert steps == 2 and actions.shape == (2, 1) and np.all(np.abs(actions) <= 1)
  assert 0 < score <= 2 * 8   # at most one reward unit per physics step


def test_model_statistics_match_numpy():
  rng = np.random.default_rng(2)
  true = rng.normal(size=20)
  predicted = true + 0.1 * rng.normal(size=20)
  random = rng.normal(size=(20, 30)) * np.linspace(0.5, 2, 30)
  stats = diagnose_planet.model_statistics(predicted, true, random)
  assert abs(stats['correlation'] - np.corrcoef(predicted, true)[0, 1]) < 1e-12
  assert abs(stats['mean_abs_error'] - np.mean(np.abs(predicted - true))) < 1e-12
  within = np.mean([np.std(row) for row in random])
  between = np.std([np.mean(row) for row in random])
  assert abs(stats['within_start_spread'] - within) < 1e-12
  assert abs(stats['within_over_between'] - within / between) < 1e-9

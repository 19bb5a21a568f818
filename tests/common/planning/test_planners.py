"""common/planning/planners.py: CEM, MPPI and gradient planning on an analytic model with a known
optimum, MPPI's weighted refit against a NumPy loop, and warm starts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.planning import planners as planning

GOAL = jnp.array([0.5, -0.3])


def rollout(state, actions, key):
  """s_{h+1} = s_h + a_h; contribution -||s_{h+1} - goal||^2. Optimum: a_0 = goal - s_0, then 0."""
  del key
  positions = state + jnp.cumsum(actions, axis=1)           # [C, H, A]
  return -jnp.sum(jnp.square(positions - GOAL), -1)


def _score(plan):
  return float(planning.objective(rollout, jnp.zeros(2), plan[None], jax.random.PRNGKey(0))[0])


@pytest.mark.parametrize('kind', planning.PLANNERS)
def test_each_planner_finds_the_analytic_optimum_and_improves_on_its_start(kind):
  config = planning.PlannerConfig(horizon=4, candidates=300, top_k=30, iterations=8,
                                  grad_steps=150, grad_lr=0.05)
  init = jnp.zeros((4, 2))
  plan = jax.jit(lambda key: planning.plan(kind, config, rollout, jnp.zeros(2), key, init))(
      jax.random.PRNGKey(1))
  assert _score(plan) > _score(init) + 0.3
  assert _score(plan) > -0.02, _score(plan)                   # optimum 0
  np.testing.assert_allclose(plan[0], GOAL, atol=0.1)


@pytest.mark.parametrize('kind', ['cem', 'mppi'])
def test_extra_candidates_are_scored_and_win_when_best(kind):
  """With one iteration and a tiny spread, the optimal `extra` sequence is the best elite."""
  best = jnp.zeros((1, 4, 2)).at[0, 0].set(GOAL)
  config = planning.PlannerConfig(horizon=4, candidates=20, top_k=1, iterations=1)
  plan = planning.plan(kind, config, rollout, jnp.zeros(2), jax.random.PRNGKey(0),
                       jnp.full((4, 2), -1.0), extra=best)
  np.testing.assert_allclose(plan, best[0], atol=1e-5)


def test_mppi_refit_matches_a_numpy_loop():
  """One MPPI iteration: the same samples (same keys) refit by exp-weighted elites in NumPy."""
  key, mean, std = jax.random.PRNGKey(4), jnp.zeros((3, 2)), jnp.full((3, 2), 0.7)
  candidates, top_k, temperature = 50, 8, 0.5
  got = planning.mppi(rollout, jnp.zeros(2), key, mean, std, candidates=candidates,
                      top_k=top_k, iterations=1, temperature=temperature, min_std=1e-3)
  noise_key, _ = jax.random.split(jax.random.split(key, 1)[0])
  actions = np.clip(np.asarray(jax.random.normal(noise_key, (candidates, 3, 2))) * 0.7, -1, 1)
  returns = []
  for candidate in actions:
    position, total = np.zeros(2), 0.0
    for action in candidate:
      position = position + action
      total -= np.sum(np.square(position - np.asarray(GOAL)))
    returns.append(total)
  order = np.argsort(returns)[::-1][:top_k]
  weights = np.array([np.exp(temperature * (returns[i] - returns[order[0]])) for i in order])
  weights /= weights.sum()
  expected = sum(w * actions[i] for w, i in zip(weights, order))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_shift_moves_the_plan_one_step_on():
  plan = jnp.arange(6.0).reshape(3, 2)
  np.testing.assert_array_equal(planning.shift(plan), [[2, 3], [4, 5], [0, 0]])


def test_bad_sizes_are_one_line_errors():
  with pytest.raises(ValueError, match='top_k'):
    planning.check(planning.PlannerConfig(candidates=10, top_k=20))
  with pytest.raises(ValueError, match='unknown|use one of'):
    planning.plan('beam', planning.PlannerConfig(), rollout, jnp.zeros(2),
                  jax.random.PRNGKey(0), jnp.zeros((12, 2)))


@pytest.mark.parametrize('kind', planning.PLANNERS)
@pytest.mark.parametrize('metric', planning.METRICS)
def test_closed_loop_goal_reaching_with_a_perfect_model_reaches_the_goal(kind, metric):
  """A toy deterministic env s' = s + 0.3 a (|a| <= 1) and its perfect model: replanning
  every step toward a goal 1.2 away (4 steps at full speed) with the distance of the plan's
  last latent as the cost reaches it; cosine distance reaches the goal's direction."""
  goal = jnp.array([0.9, -0.8])

  def rollout(state, actions, key):
    del key
    return planning.goal_contributions(state + 0.3 * jnp.cumsum(actions, 1), goal, metric)

  config = planning.PlannerConfig(horizon=5, candidates=200, top_k=20, iterations=5,
                                  grad_steps=60, grad_lr=0.1)
  step = jax.jit(lambda s, last, key: planning.plan(kind, config, rollout, s, key,
                                                    planning.shift(last)))
  state, last = jnp.array([0.05, 0.05]), jnp.zeros((5, 2))
  for t in range(8):
    last = step(state, last, jax.random.PRNGKey(t))
    state = state + 0.3 * jnp.clip(last[0], -1, 1)
  final = float(planning.distance(state, goal, metric))
  assert final < (0.1 if metric == 'euclidean' else 0.01), final


def test_distances_match_numpy():
  rng = np.random.default_rng(0)
  x, goal = rng.normal(size=(4, 3)), rng.normal(size=3)
  np.testing.assert_allclose(planning.distance(x, goal), np.linalg.norm(x - goal, axis=1),
                             rtol=1e-5)
  cosine = 1 - x @ goal / (np.linalg.norm(x, axis=1) * np.linalg.norm(goal))
  np.testing.assert_allclose(planning.distance(x, goal, 'cosine'), cosine, rtol=1e-4, atol=1e-6)

"""CEM planner against NumPy/SciPy references on analytic point-mass models."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from common.planning import cem

# A velocity-controlled point mass: x_{t+1} = x_t + DT * a_t per action dim,
# reward r_t = -|x_{t+1} - goal|^2 - ACTION_COST |a_t|^2. (With a double
# integrator the objective is so ill-conditioned that CEM's diagonal Gaussian
# collapses before reaching the optimum at PlaNet's budget, as CEM is known to.)
DT = 0.5
ACTION_COST = 0.5


def point_mass_rollout(state, actions, key=None):
  """state: dict with 'pos', 'goal' [A]; actions [C, H, A] -> rewards [C, H] (deterministic)."""
  del key
  def step(pos, action):
    pos = pos + DT * action
    reward = (-((pos - state['goal']) ** 2) - ACTION_COST * action ** 2).sum(-1)
    return pos, reward
  start = jnp.broadcast_to(state['pos'], (actions.shape[0],) + state['pos'].shape)
  _, rewards = jax.lax.scan(step, start, jnp.swapaxes(actions, 0, 1))
  return rewards.T


def numpy_return(actions, pos, goal):
  """Plain loop: the summed reward of one sequence [H, A]."""
  total = 0.0
  pos = np.array(pos, np.float64)
  for action in actions:
    pos = pos + DT * action
    total += float((-(pos - goal) ** 2 - ACTION_COST * action ** 2).sum())
  return total


def reference_plan(pos, goal, horizon):
  """Box-constrained optimum of the (convex) quadratic objective by L-BFGS-B."""
  dim = len(pos)
  objective = lambda flat: -numpy_return(flat.reshape(horizon, dim), pos, goal)
  result = optimize.minimize(objective, np.zeros(horizon * dim),
                             method='L-BFGS-B',
                             bounds=[(-1.0, 1.0)] * (horizon * dim))
  return result.x.reshape(horizon, dim)


def make_state(pos, goal):
  return {'pos': jnp.asarray(pos, jnp.float32),
          'goal': jnp.asarray(goal, jnp.float32)}


@pytest.mark.parametrize('pos,goal,atol', [
    ([-0.5], [0.0], 0.03),              # 1-D, interior optimum
    ([0.3, -0.1], [-0.2, 0.2], 0.06),   # 2-D, a different goal per dimension
])
def test_first_action_matches_bounded_optimum(pos, goal, atol):
  state = make_state(pos, goal)
  planned = jax.jit(functools.partial(
      cem.plan, point_mass_rollout, action_dim=len(pos)))(
          state, jax.random.PRNGKey(0))
  expected = reference_plan(np.array(pos), np.array(goal), 12)
  assert planned.shape == (12, len(pos))
  np.testing.assert_allclose(planned[0], expected[0], atol=atol)
  # The plan is (nearly) as good as the optimum under the NumPy model.
  planned_return = numpy_return(np.asarray(planned, np.float64), pos, goal)
  optimal_return = numpy_return(expected, pos, goal)
  assert planned_return >= optimal_return - 0.05 * abs(optimal_return) - 1e-2


def test_actions_clipped_and_bound_optimum_found():
  # Goal far away: the optimum pushes at the bound; plans never leave [-1, 1].
  state = make_state([0.0], [50.0])
  planned = jax.jit(functools.partial(
      cem.plan, point_mass_rollout, action_dim=1, candidates=300, top_k=30))(
          state, jax.random.PRNGKey(1))
  assert np.all(np.abs(np.asarray(planned)) <= 1.0)
  np.testing.assert_allclose(planned[0], [1.0], atol=0.02)


def test_brute_force_grid_two_steps():
  # Horizon 2 with a non-separable reward: exhaustive NumPy grid search.
  def rollout(target, actions, key):
    del key
    first, second = actions[:, 0, 0], actions[:, 1, 0]
    r0 = -(first - target) ** 2
    r1 = -(first + second - 0.3) ** 2 - 0.5 * (second - first) ** 2
    return jnp.stack([r0, r1], axis=1)
  grid = np.linspace(-1, 1, 401)
  first, second = np.meshgrid(grid, grid, indexing='ij')
  target = 0.8
  total = (-(first - target) ** 2 - (first + second - 0.3) ** 2
           - 0.5 * (second - first) ** 2)
  best = np.unravel_index(np.argmax(total), total.shape)
  planned = jax.jit(functools.partial(
      cem.plan, rollout, action_dim=1, horizon=2))(
          jnp.float32(target), jax.random.PRNGKey(2))
  np.testing.assert_allclose(planned[:, 0], [grid[best[0]], grid[best[1]]],
                             atol=0.02)


def test_compiles_once_per_shape():
  traces = []

  def rollout(state, actions, key):
    traces.append(actions.shape)
    return point_mass_rollout(state, actions, key)

  planner = jax.jit(functools.partial(
      cem.plan, rollout, action_dim=1, candidates=64, top_k=8, iterations=3))
  for seed in range(3):
    planner(make_state([seed * 0.1], [0.0]), jax.random.PRNGKey(seed))
  assert len(traces) == 1, traces
  # A new state shape (2-D point mass) is a new program: one more trace only.
  planner2 = jax.jit(functools.partial(
      cem.plan, rollout, action_dim=2, candidates=64, top_k=8, iterations=3))
  for seed in range(2):
    planner2(make_state([0.0, 0.0], [1.0, 1.0]),
             jax.random.PRNGKey(seed))
  assert len(traces) == 2, traces
  assert traces == [(64, 12, 1), (64, 12, 2)]


def test_batch_gives_per_state_plans():
  starts = [(-0.5, 0.0), (0.8, 0.6), (0.0, -0.3)]
  states = make_state([[p] for p, _ in starts], [[g] for _, g in starts])
  planned = jax.jit(functools.partial(
      cem.plan_batch, point_mass_rollout, action_dim=1))(
          states, jax.random.PRNGKey(3))
  assert planned.shape == (3, 12, 1)
  for index, (pos, goal) in enumerate(starts):
    expected = reference_plan(np.array([pos]), np.array([goal]), 12)
    np.testing.assert_allclose(planned[index, 0], expected[0], atol=0.03)


def test_bad_arguments_name_the_argument():
  state = make_state([0.0], [0.0])
  with pytest.raises(ValueError, match='top_k'):
    cem.plan(point_mass_rollout, state, jax.random.PRNGKey(0), 1,
             candidates=10, top_k=20)
  with pytest.raises(ValueError, match='horizon'):
    cem.plan(point_mass_rollout, state, jax.random.PRNGKey(0), 1, horizon=0)
  with pytest.raises(ValueError, match='key'):
    cem.plan(point_mass_rollout, state, jnp.zeros(3), 1)
  with pytest.raises(ValueError, match='leading'):
    cem.plan_batch(point_mass_rollout, {'pos': jnp.zeros((2, 1)),
                                        'goal': jnp.zeros((3, 1))},
                   jax.random.PRNGKey(0), 1)


def test_refit_keeps_the_reference_std_floor():
  """Reference control/planning.py: mean and sqrt(var + 1e-6) of the top-K candidates, so
  identical elites keep a std of 1e-3 instead of collapsing to 0."""
  elites = np.random.default_rng(0).normal(size=(7, 3, 2)).astype(np.float32)
  mean, std = cem.refit(jnp.asarray(elites))
  np.testing.assert_allclose(mean, elites.astype(np.float64).mean(0), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(std, np.sqrt(elites.astype(np.float64).var(0) + 1e-6), rtol=1e-5)
  _, std = cem.refit(jnp.full((5, 3, 2), 0.4))
  np.testing.assert_allclose(std, 1e-3, rtol=1e-4)


def test_rollouts_get_a_new_key_every_iteration():
  """A stochastic model samples new latents in each CEM iteration (the reference re-runs its
  rollout every iteration), so `rollout_fn` gets a different key each time."""
  seen = []

  def rollout(state, actions, key):
    jax.debug.callback(lambda k: seen.append(np.asarray(k).tobytes()), key)
    return point_mass_rollout(state, actions)

  jax.jit(functools.partial(cem.plan, rollout, action_dim=1, candidates=8, top_k=2,
                            iterations=4))(make_state([0.0], [0.5]), jax.random.PRNGKey(0))
  assert len(seen) == 4 and len(set(seen)) == 4

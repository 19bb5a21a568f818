"""DreamerV3 components against independent references (NumPy loops, known constants)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.envs.spaces import Space
from common.nn import returns as returns_lib
from dreamer import actor_critic
from dreamer import configs
from dreamer import networks

# Tests check behaviour, not speed: skip XLA's backend optimisations to compile faster.
FAST = {'xla_backend_optimization_level': 0}


def jit(function, **kwargs):
  return jax.jit(function, compiler_options=FAST, **kwargs)


def test_twohot_reward_head_recovers_constant_reward():
  """A zero-initialised symexp two-hot head learns a constant reward on a fixed batch."""
  head_cfg = configs.HeadConfig(layers=1, units=16)
  head = networks.make_head(head_cfg)
  feat = jax.random.normal(jax.random.PRNGKey(0), (32, 8))
  params = head.init(jax.random.PRNGKey(1), feat)['params']
  target = jnp.full((32,), 3.7)

  def predict(params):
    return networks.head_mean(head_cfg, networks.head_dist(head_cfg, head.apply({'params': params}, feat)))

  def loss(params):
    dist = networks.head_dist(head_cfg, head.apply({'params': params}, feat))
    return -dist.log_prob(target).mean()

  assert np.allclose(predict(params), 0.0, atol=1e-6)  # zero-initialised output layer
  opt = optax.adam(3e-2)
  opt_state = opt.init(params)

  @jit
  def step(params, opt_state):
    grads = jax.grad(loss)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  for _ in range(150):
    params, opt_state = step(params, opt_state)
  np.testing.assert_allclose(np.asarray(predict(params)), 3.7, atol=0.05)


def _numpy_lambda_returns(reward, cont, value, gamma, lam):
  """R[t] = r[t+1] + gamma c[t+1] ((1 - lam) v[t+1] + lam R[t+1]); R[H-1] bootstraps v[H]."""
  n, steps = reward.shape
  out = np.zeros((n, steps - 1))
  for i in range(n):
    following = value[i, -1]
    for t in reversed(range(steps - 1)):
      disc = gamma * cont[i, t + 1]
      following = reward[i, t + 1] + disc * ((1 - lam) * value[i, t + 1] + lam * following)
      out[i, t] = following
  return out


def test_return_normaliser_scale_follows_percentiles():
  """imagination_loss updates the 5th/95th percentile EMA from the lambda-returns (V3, Eq. 8)."""
  config = configs.DreamerConfig(
      actor=configs.ActorConfig(layers=1, units=8), critic=configs.CriticConfig(layers=1, units=8))
  ac = actor_critic.make(config, Space(np.int32, (), 0, 2))
  params = actor_critic.init_params(ac, jax.random.PRNGKey(0), 6)
  rng = np.random.default_rng(0)
  n, steps = 64, 16
  traj = {
      'feat': rng.normal(size=(n, steps, 6)).astype(np.float32),
      'action': np.eye(3, dtype=np.float32)[rng.integers(0, 3, (n, steps))],
      'reward': rng.normal(0, 20, (n, steps)).astype(np.float32),
      'cont': rng.uniform(0.9, 1.0, (n, steps)).astype(np.float32),
  }
  state = returns_lib.PercentileNormalizerState(jnp.float32(2.0), jnp.float32(3.0))
  loss = jit(lambda p, s, t: actor_critic.imagination_loss(ac, p, p['critic'], s, t))
  _, _, new_state, returns, metrics = loss(params, state, traj)
  # The critic starts at zero (zero-initialised two-hot output), so values are 0.
  expected = _numpy_lambda_returns(traj['reward'], traj['cont'], np.zeros((n, steps)), 1.0, 0.95)
  np.testing.assert_allclose(np.asarray(returns), expected, rtol=1e-4, atol=1e-3)
  low = 0.99 * 2.0 + 0.01 * np.percentile(expected, 5)
  high = 0.99 * 3.0 + 0.01 * np.percentile(expected, 95)
  np.testing.assert_allclose([new_state.low, new_state.high], [low, high], rtol=1e-4)
  np.testing.assert_allclose(metrics['return_scale'], max(1.0, high - low), rtol=1e-4)


def test_policy_gradient_is_reinforce_for_discrete_v3():
  """With REINFORCE the actor's gradient is E[grad log pi(a) * sg(adv)] + entropy; no
  gradient reaches the imagined features."""
  config = configs.DreamerConfig(
      actor=configs.ActorConfig(layers=1, units=8, entropy=0.0),
      critic=configs.CriticConfig(layers=1, units=8))
  ac = actor_critic.make(config, Space(np.int32, (), 0, 2))
  params = actor_critic.init_params(ac, jax.random.PRNGKey(0), 6)
  rng = np.random.default_rng(1)
  traj = {
      'feat': jnp.asarray(rng.normal(size=(8, 4, 6)), jnp.float32),
      'action': jnp.asarray(np.eye(3)[rng.integers(0, 3, (8, 4))], jnp.float32),
      'reward': jnp.asarray(rng.normal(size=(8, 4)), jnp.float32),
      'cont': jnp.ones((8, 4), jnp.float32),
  }
  state = returns_lib.percentile_normalizer_init()

  def policy_loss(feat):
    return actor_critic.imagination_loss(ac, params, params['critic'], state, dict(traj, feat=feat))[0]

  assert np.allclose(jit(jax.grad(policy_loss))(traj['feat']), 0.0)
  # Reference: -mean(weight * log pi(a) * adv) with the same advantages.
  _, _, _, returns, metrics = jit(lambda p: actor_critic.imagination_loss(
      ac, p, p['critic'], state, traj))(params)
  scale = metrics['return_scale']

  def reference(actor_params):
    dist = actor_critic.actor_dist(ac, actor_params, traj['feat'])
    logp = dist.log_prob(traj['action'])[:, :-1]
    # The zero-initialised critic predicts 0, so the advantage is the return; weights are 1.
    return -(logp * returns / scale).mean()

  grad = jit(jax.grad(lambda a: actor_critic.imagination_loss(
      ac, dict(params, actor=a), params['critic'], state, traj)[0]))(params['actor'])
  ref = jit(jax.grad(reference))(params['actor'])
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-7), grad, ref)

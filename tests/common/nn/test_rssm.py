"""Tests for common/nn/rssm.py with tiny sizes (deter 32, stoch 4x4)."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn import rssm as rssm_lib
from common.nn.rssm import RSSM

V3 = dataclasses.replace(rssm_lib.DREAMERV3, deter=32, hidden=16, stoch=4, classes=4, blocks=4)
V1 = dataclasses.replace(rssm_lib.DREAMERV1, deter=32, hidden=16, stoch=4)
EMBED, ACTION = 6, 2

# The programs here are tiny and run a handful of times: compile time dominates, so skip the
# expensive XLA backend passes (measured about 2x faster to compile; results are unchanged).
_jit = functools.partial(jax.jit, compiler_options={
    'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})


@functools.lru_cache(maxsize=None)
def _setup(config, batch=3, length=6, seed=0):
  model = RSSM(config, ACTION)
  params = _jit(lambda k: rssm_lib.init_params(model, k, EMBED))(jax.random.PRNGKey(seed))
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), 3)
  embed = jax.random.normal(keys[0], (batch, length, EMBED))
  action = jax.random.uniform(keys[1], (batch, length, ACTION), minval=-1, maxval=1)
  is_first = np.zeros((batch, length), bool)
  is_first[:, 0] = True
  return model, params, embed, action, jnp.asarray(is_first)


@functools.lru_cache(maxsize=None)
def _observe_and_grad(model):
  """One compiled program per model: observe (post, prior) and the gradient of a loss on them.

  loss = sum(feat(post) @ w) + sum(feat(prior) @ w) + sum(sin(stats)) touches every output, so
  every parameter must receive a gradient.
  """
  config = model.config
  feat_dim = config.deter + config.stoch * max(config.classes, 1)
  weight = jax.random.normal(jax.random.PRNGKey(9), (feat_dim,))

  def loss(p, e, a, f, s, k):
    post, prior = rssm_lib.observe(model, p, e, a, f, s, k)
    total = 0.0
    for state in (post, prior):
      total += jnp.sum(model.apply(p, state, method=RSSM.feat) @ weight)
      total += sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(state.stats))
    return total, (post, prior)

  def run(p, e, a, f, s, k):
    grads, (post, prior) = jax.grad(loss, has_aux=True)(p, e, a, f, s, k)
    return post, prior, grads
  return _jit(run)


def _observe(model):
  def observe(*args):
    post, prior, _ = _observe_and_grad(model)(*args)
    return post, prior
  return observe


@pytest.mark.parametrize('config', [V3, V1], ids=['v3', 'v1'])
def test_observe_matches_python_loop_with_reset_shapes_and_gradients(config):
  model, params, embed, action, is_first = _setup(config)
  is_first = is_first.at[0, 3].set(True)   # reset in the middle of sequence 0
  key = jax.random.PRNGKey(7)
  post, prior, grads = _observe_and_grad(model)(params, embed, action, is_first, None, key)
  stoch = (3, 6, 4, 4) if config.classes else (3, 6, 4)
  assert post.deter.shape == (3, 6, 32) and post.stoch.shape == stoch
  assert prior.stoch.shape == stoch
  feat = _jit(lambda p, s: model.apply(p, s, method=RSSM.feat))(params, post)
  assert feat.shape == (3, 6, 32 + 16 if config.classes else 32 + 4)

  # Gradients reach every parameter (the loss touches feat and stats of post and prior).
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert len(flat) == len(jax.tree.leaves(params))
  for path, grad in flat:
    assert np.all(np.isfinite(grad)), path
    assert np.abs(grad).max() > 0, f'no gradient for {jax.tree_util.keystr(path)}'

  # Reference: a Python loop of obs_step with the documented per-step keys.
  obs_step = _jit(lambda p, s, a, e, f, k: model.apply(p, s, a, e, f, k, method=RSSM.obs_step))
  keys = jax.random.split(key, 6)
  initial = _jit(lambda p: model.apply(p, 3, method=RSSM.initial))
  state = initial(params)
  for t in range(6):
    state, prior_t = obs_step(params, state, action[:, t], embed[:, t], is_first[:, t], keys[t])
    for got, want in zip(jax.tree.leaves((post, prior)), jax.tree.leaves((state, prior_t))):
      np.testing.assert_allclose(got[:, t], want, rtol=1e-5, atol=1e-5)

  # After the reset, sequence 0 equals a fresh start from `initial` with a zero action.
  fresh = initial(params)
  for t in range(3, 6):
    act = action[:, t].at[0].set(0.0) if t == 3 else action[:, t]
    fresh, _ = obs_step(params, fresh, act, embed[:, t], jnp.zeros((3,), bool), keys[t])
    np.testing.assert_allclose(post.deter[0, t], fresh.deter[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(post.stoch[0, t], fresh.stoch[0], rtol=1e-5, atol=1e-5)
  # ... and differs from the run without the reset.
  no_reset, _ = _observe(model)(params, embed, action, is_first.at[0, 3].set(False), None, key)
  assert np.abs(no_reset.deter[0, 3] - post.deter[0, 3]).max() > 1e-3
  np.testing.assert_allclose(no_reset.deter[1:], post.deter[1:], rtol=1e-6)


def _dots(jaxpr) -> int:
  """The matrix products in a jaxpr, those inside its sub-jaxprs (pjit, custom_jvp) counted."""
  count = 0
  for eqn in jaxpr.eqns:
    count += eqn.primitive.name == 'dot_general'
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        sub = getattr(sub, 'jaxpr', sub)   # a ClosedJaxpr's Jaxpr
        count += _dots(sub) if hasattr(sub, 'eqns') else 0
  return count


@pytest.mark.parametrize('config', [V3, V1], ids=['v3', 'v1'])
def test_observe_loop_holds_the_posterior_step_and_no_prior_head(config):
  """The sequential loop runs only h_t and q(z_t | h_t, e_t); the priors, which read h_t
  alone, are one batched pass after it (as f8817c4 rssm.py `loss`): fewer kernels per step on
  an accelerator (issue 32). Their values are the per-step loop's (the test above)."""
  model, params, embed, action, is_first = _setup(config)
  jaxpr = jax.make_jaxpr(lambda p: rssm_lib.observe(
      model, p, embed, action, is_first, None, jax.random.PRNGKey(0)))(params)
  loops = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == 'scan']
  assert len(loops) == 1
  state = model.apply(params, 3, method=RSSM.initial)
  args = (state, action[:, 0], embed[:, 0], is_first[:, 0], jax.random.PRNGKey(0))
  step = lambda method: _dots(jax.make_jaxpr(
      lambda p: model.apply(p, *args, method=method))(params).jaxpr)
  body = _dots(loops[0].params['jaxpr'].jaxpr)
  assert body == step(RSSM.post_step) < step(RSSM.obs_step)
  prior_head = step(RSSM.obs_step) - step(RSSM.post_step)
  assert prior_head == config.img_layers + 1
  assert _dots(jaxpr.jaxpr) == body + prior_head   # the priors: once, outside the loop


def test_same_key_same_output_and_imagine_matches_loop():
  model, params, embed, action, is_first = _setup(V3)
  observe = _observe(model)
  key = jax.random.PRNGKey(3)
  post_a, _ = observe(params, embed, action, is_first, None, key)
  post_b, _ = observe(params, embed, action, is_first, None, key)
  post_c, _ = observe(params, embed, action, is_first, None, jax.random.PRNGKey(4))
  for a, b in zip(jax.tree.leaves(post_a), jax.tree.leaves(post_b)):
    np.testing.assert_array_equal(a, b)
  assert np.abs(post_a.stoch - post_c.stoch).max() > 0.5

  start = jax.tree.map(lambda x: x[:, -1], post_a)
  img_step = _jit(lambda p, s, a, k: model.apply(p, s, a, k, method=RSSM.img_step))
  weight = jax.random.normal(jax.random.PRNGKey(5), (32, ACTION))

  def policy(state, k):
    return jnp.tanh(state.deter @ weight) + 0.1 * jax.random.normal(k, (state.deter.shape[0], ACTION))

  horizon = 4
  states, actions = _jit(
      lambda p, s, k: rssm_lib.imagine(model, p, s, policy, horizon, k))(params, start, key)
  assert states.deter.shape == (3, horizon + 1, 32) and actions.shape == (3, horizon + 1, ACTION)
  keys = jax.random.split(key, horizon + 1)
  state = start
  for t in range(horizon + 1):
    policy_key, img_key = jax.random.split(keys[t])
    act = policy(state, policy_key)
    np.testing.assert_allclose(states.deter[:, t], state.deter, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(actions[:, t], act, rtol=1e-5, atol=1e-5)
    state = img_step(params, state, act, img_key)

  given = jax.random.uniform(key, (3, horizon, ACTION), minval=-1, maxval=1)
  states, returned = _jit(
      lambda p, s, a, k: rssm_lib.imagine(model, p, s, a, None, k))(params, start, given, key)
  np.testing.assert_array_equal(returned, given)
  keys = jax.random.split(key, horizon)
  state = start
  for t in range(horizon):
    state = img_step(params, state, given[:, t], keys[t])
    np.testing.assert_allclose(states.stoch[:, t + 1], state.stoch, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(states.deter[:, t + 1], state.deter, rtol=1e-5, atol=1e-5)


def test_observe_and_imagine_trace_once_on_16x64():
  model, params, _, _, _ = _setup(V3)
  traces = []

  @_jit
  def run(p, embed, action, is_first, key):
    traces.append(1)
    post, _ = rssm_lib.observe(model, p, embed, action, is_first, None, key)
    start = jax.tree.map(lambda x: x[:, -1], post)
    states, _ = rssm_lib.imagine(model, p, start, lambda s, k: jnp.tanh(s.deter[:, :ACTION]), 15, key)
    return post.deter.sum() + states.deter.sum()

  for seed in range(2):
    keys = jax.random.split(jax.random.PRNGKey(seed), 3)
    embed = jax.random.normal(keys[0], (16, 64, EMBED))
    action = jax.random.normal(keys[1], (16, 64, ACTION))
    is_first = jax.random.bernoulli(keys[2], 0.05, (16, 64))
    assert np.isfinite(float(run(params, embed, action, is_first, keys[0])))
  assert len(traces) == 1


def test_bad_inputs_name_the_argument():
  model, params, embed, action, is_first = _setup(V1)
  with pytest.raises(AssertionError, match='prev_action'):
    rssm_lib.observe(model, params, embed, action[..., :1], is_first, None, jax.random.PRNGKey(0))
  with pytest.raises(AssertionError, match='embed'):
    rssm_lib.observe(model, params, embed[:, 0], action, is_first, None, jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match='classes'):
    rssm_lib.RSSMConfig(classes=1)
  with pytest.raises(ValueError, match='core'):
    rssm_lib.RSSMConfig(core='lstm')

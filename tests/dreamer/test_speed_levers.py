"""The train step's speed levers (issue 32) change how XLA runs the step, not what it computes:
each gives the same losses and gradients as the default, and its step compiles once."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.envs.spaces import Space
from common.run import config as config_lib
from dreamer import agent as agent_lib
from dreamer import configs
from tests.dreamer.test_agent import B, T, jit, spaces, synthetic_batch

# Each lever's settings, and what its step's jaxpr must show (debug size: the observe scan runs
# over 7 trained steps, imagination over 15).
LEVERS = {
    'scans unrolled by 4': ({'agent.rssm.unroll': 4}, ['unroll=4']),
    'scans unrolled fully': ({'agent.rssm.unroll': 64}, ['unroll=7', 'unroll=15']),
}


def capture_gradients(cfg):
  """An optimizer whose update is zero and whose state is the last gradient."""
  del cfg
  init = lambda params: jax.tree.map(jnp.zeros_like, params)
  update = lambda grads, state, params=None: (jax.tree.map(jnp.zeros_like, grads), grads)
  return optax.GradientTransformation(init, update), None


def losses_and_gradients(sets, monkeypatch):
  argv = ['--env', 'gym_CartPole-v1', '--size', 'debug', '--set', f'run.batch_size={B}',
          '--set', f'run.batch_length={T}']
  for key, value in sets.items():
    argv += ['--set', f'{key}={value}']
  config = config_lib.parse(argv, configs.PRESETS)
  monkeypatch.setattr(agent_lib, 'make_optimizer', capture_gradients)
  agent = agent_lib.make_agent(config, spaces(), Space(np.int32, (), 0, 3))
  state = jit(agent.init)(jax.random.PRNGKey(0))
  jaxpr = str(jax.make_jaxpr(agent.train)(state, synthetic_batch(0)))
  train = jit(agent.train)
  state, metrics = train(state, synthetic_batch(0))
  _, again = train(state, synthetic_batch(1))
  assert train._cache_size() == 1
  assert np.isfinite(float(again['loss']))
  losses = {k: float(v) for k, v in metrics.items() if k.endswith('loss')}
  return losses, jax.tree.map(np.asarray, state.opt_state), jaxpr


@pytest.fixture(scope='module')
def default_step():
  with pytest.MonkeyPatch.context() as monkeypatch:
    return losses_and_gradients({}, monkeypatch)


@pytest.mark.parametrize('lever', sorted(LEVERS))
def test_lever_keeps_losses_and_gradients(lever, default_step, monkeypatch):
  sets, shows = LEVERS[lever]
  losses, grads, jaxpr = losses_and_gradients(sets, monkeypatch)
  expected_losses, expected_grads, _ = default_step
  for text in shows:
    assert text in jaxpr, text
  assert losses.keys() == expected_losses.keys()
  for name, value in losses.items():
    np.testing.assert_allclose(value, expected_losses[name], rtol=1e-5, atol=1e-6, err_msg=name)
  paths = jax.tree_util.tree_leaves_with_path(grads)
  for (path, ours), expected in zip(paths, jax.tree.leaves(expected_grads)):
    scale = max(np.abs(expected).max(), 1e-8)
    np.testing.assert_allclose(ours / scale, expected / scale, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))


def test_unroll_below_one_is_a_clear_error(capsys):
  with pytest.raises(SystemExit) as stop:
    config_lib.parse(['--env', 'gym_CartPole-v1', '--size', 'debug', '--set',
                      'agent.rssm.unroll=0'], configs.PRESETS)
  assert stop.value.code == 2
  assert 'agent.rssm.unroll' in capsys.readouterr().err

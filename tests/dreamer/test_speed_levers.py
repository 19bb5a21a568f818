"""The train step's speed levers (issue 32) change how XLA runs the step, not what it computes:
each gives the same losses and gradients as the default, and its step compiles once."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.envs.spaces import Space
from common.run import config as config_lib
from dreamer import agent as agent_lib
from dreamer import configs
from experiments import device_check
from tests.dreamer.test_agent import B, T, jit, spaces, synthetic_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Each lever's settings, and what its step's jaxpr must show (debug size: the observe scan runs
# over 7 trained steps, imagination and its returns over 15, the replay returns over 6).
LEVERS = {
    'scans unrolled by 4': ({'agent.rssm.unroll': 4}, ['unroll=4']),
    'scans unrolled fully': (dict(a.split('=') for a in device_check.LEVERS['unrolled']),
                             ['unroll=7', 'unroll=15', 'unroll=6']),
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


@pytest.mark.parametrize('assignment', ['agent.rssm.unroll=0',
                                        'run.xla_flags=xla_gpu_graph_min_graph_size=1'])
def test_bad_lever_values_are_one_line_errors(assignment, capsys):
  with pytest.raises(SystemExit) as stop:
    config_lib.parse(['--env', 'gym_CartPole-v1', '--size', 'debug', '--set', assignment],
                     configs.PRESETS)
  assert stop.value.code == 2
  assert assignment.split('=')[0] in capsys.readouterr().err


# The GPU's command buffers for loops (CUDA graphs), as issue 32 names them; on the CPU they
# parse and change nothing, on a GPU experiments/device_check.py measures them.
GPU_GRAPH_FLAGS = device_check.GPU_GRAPHS.split('=', 1)[1]


def test_xla_flags_reach_xla_before_jax_starts(tmp_path):
  """run.xla_flags goes to $XLA_FLAGS before the first device use: a dump flag (seen on the
  CPU) and the GPU graph flags (they must parse: XLA aborts on an unknown flag)."""
  code = (
      'import sys, jax, jax.numpy as jnp\n'
      'from common.run import config as config_lib, devices\n'
      'from dreamer import configs\n'
      'config = config_lib.parse(["--env", "gym_CartPole-v1", "--size", "debug", "--set",\n'
      '                           "run.xla_flags=" + sys.argv[1]], configs.PRESETS)\n'
      'devices.add_xla_flags(config.run.xla_flags)\n'
      'print(jax.jit(lambda x: jax.lax.scan(lambda c, _: (c * 2, c), x, None, 4)[0])(1.0))\n'
      'try:\n'
      '  devices.add_xla_flags("--xla_dump_hlo_as_text")\n'
      'except ValueError as error:\n'
      '  print(error)\n')
  flags = f'--xla_dump_to={tmp_path / "dump"} {GPU_GRAPH_FLAGS}'
  proc = subprocess.run([sys.executable, '-c', code, flags], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, env=dict(os.environ, JAX_PLATFORMS='cpu',
                                                         XLA_FLAGS=''))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines()[0] == '16.0'
  assert 'JAX has already started' in proc.stdout   # too late is an error, not a no-op
  assert any(name.endswith('.txt') or name.endswith('.pb')
             for name in os.listdir(tmp_path / 'dump'))

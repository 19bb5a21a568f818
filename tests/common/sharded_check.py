"""Run in a subprocess with 4 virtual CPU devices (tests/common/test_devices.py).

`step`: one DreamerV3 (debug size, vector observations) train step on the same batch, single device vs split
over 4 devices with common.devices.Placement; prints the largest differences as JSON.
`loop`: the shared train loop (tiny agent) on 4 train devices, acting on device 1.
`distributed PROCESS PORT`: one of two processes of a jax.distributed run (tiny agent);
each feeds its own half of a global batch and both take three sharded steps; prints the
loss beside the same steps on the whole batch in one process.
"""
import json
import sys

import jax
import numpy as np


def _agent():
  from common import config as config_lib
  from common.envs.spaces import Space
  from dreamer import agent as agent_lib
  from dreamer import configs
  config = config_lib.parse(['--env', 'gym_CartPole-v1', '--size', 'debug', '--logdir', '/tmp/s',
                             '--set', 'run.batch_size=8'], configs.PRESETS)
  obs = {'vector': Space(np.float32, (4,)), 'reward': Space(np.float32, ()),
         'is_first': Space(bool, ()), 'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
  act = Space(np.int32, (), 0, 4)
  return config, agent_lib.make_agent(config, obs, act), obs, act


def step():
  from common import devices
  config, agent, obs, act = _agent()
  from experiments import bench_dreamer
  batch = bench_dreamer.synthetic_batch(agent, obs, act, 8,
                                        config.run.batch_length + agent.replay_context)
  state = agent.init(jax.random.PRNGKey(0))
  # Unoptimised XLA compiles these two programs several times faster; the comparison holds.
  fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
  single = jax.jit(agent.train, compiler_options=fast)
  state1, metrics1 = jax.block_until_ready(single(state, batch))
  placement = devices.Placement(config.run)
  sharded = jax.jit(agent.train, out_shardings=placement.replicated, compiler_options=fast)
  state4, metrics4 = jax.block_until_ready(
      sharded(placement.put_state(state), placement.put_batch(batch)))
  diffs = jax.tree.leaves(jax.tree.map(
      lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
      if np.issubdtype(np.asarray(a).dtype, np.floating) else 0.0,
      state1.params, state4.params))
  scale = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(state1.params))
  print(json.dumps({
      'devices': placement.train_devices,
      'batch_shards': len(placement.put_batch(batch)['vector'].addressable_shards),
      'loss': [float(metrics1['loss']), float(metrics4['loss'])],
      'max_param_diff': max(diffs), 'param_scale': scale,
      'param_spec': str(jax.tree.leaves(state4.params)[0].sharding.spec)}))


def _tiny():
  """The train loop tests' linear-regression agent (compiles in a second)."""
  from tests.common import test_train_loop
  return test_train_loop


def distributed(process, port):
  import types
  from common import devices
  # Joins before anything touches a device (building an agent may ask for the backend).
  devices.initialize_distributed(types.SimpleNamespace(
      coordinator=f'localhost:{port}', processes=2, process_id=process))
  tiny = _tiny()
  config = tiny.Config()
  config = tiny._config(__import__('pathlib').Path('/tmp'), batch_size=8, batch_length=4)
  agent = tiny.make_agent(config, None, tiny._Discrete())
  placement = devices.Placement(config.run)
  state = placement.put_state(agent.init(jax.random.PRNGKey(0)))
  train = jax.jit(agent.train, donate_argnums=0, out_shardings=placement.replicated)
  full = {'vector': np.random.default_rng(0).normal(size=(8, 4, 4)).astype(np.float32)}
  full['reward'] = full['vector'].sum(-1)
  for _ in range(3):   # each process feeds its own half of the global batch
    local = {key: value[4 * process:4 * (process + 1)] for key, value in full.items()}
    state, metrics = train(state, placement.put_batch(local))
    loss = float(jax.block_until_ready(metrics['loss']))
  # The same three steps on the whole batch in one process, for comparison.
  alone = agent.init(jax.random.PRNGKey(0))
  for _ in range(3):
    alone, alone_metrics = jax.jit(agent.train)(
        alone, {k: jax.device_put(v, jax.local_devices()[0]) for k, v in full.items()})
  print(json.dumps({'process': process, 'processes': jax.process_count(),
                    'devices': placement.train_devices, 'loss': loss,
                    'alone_loss': float(alone_metrics['loss']),
                    'calls': int(state['calls'])}))


def loop():
  """The shared train loop on 4 train devices, acting on device 1."""
  import os
  import tempfile
  from common import train_loop
  tiny = _tiny()
  config = tiny._config(__import__('pathlib').Path(tempfile.mkdtemp()), batch_size=4,
                        policy_devices=(1,), envs=2)
  summary = train_loop.run(tiny.make_agent, config, stream=sys.stdout)
  print(json.dumps({'updates': summary['updates'], 'step': summary['step']}))
  del os


if __name__ == '__main__':
  if sys.argv[1] == 'step':
    step()
  elif sys.argv[1] == 'loop':
    loop()
  elif sys.argv[1] == 'distributed':
    distributed(int(sys.argv[2]), int(sys.argv[3]))

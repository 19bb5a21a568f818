"""Run in a subprocess with 4 virtual CPU devices (tests/common/test_devices.py).

`step`: one DreamerV3 (debug size, vector observations) train step on the same batch, single device vs split
over 4 devices with common.devices.Placement; prints the largest differences as JSON.
`loop`: the shared train loop on 4 train devices and policy device 1 for a few updates.
`distributed PROCESS PORT`: one of two processes of a jax.distributed run; each feeds its
own local half-batch and both take three sharded steps; prints the loss.
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


def _batch(agent, obs, act, batch, length, seed):
  from common import memory
  spec = memory.train_batch_spec(agent, obs, act, batch, length)
  rng = np.random.default_rng(seed)
  out = {}
  for key, value in spec.items():
    if value.dtype == np.uint8:
      out[key] = rng.integers(0, 256, value.shape).astype(np.uint8)
    elif value.dtype == bool:
      out[key] = np.zeros(value.shape, bool)
      if key == 'is_first':
        out[key][:, 0] = True
    elif np.issubdtype(value.dtype, np.integer):
      out[key] = rng.integers(0, 4, value.shape).astype(value.dtype)
    else:
      out[key] = rng.normal(size=value.shape).astype(value.dtype)
  if 'context/stoch' in out:  # a one-hot latent
    stoch = out['context/stoch']
    out['context/stoch'] = np.eye(stoch.shape[-1], dtype=stoch.dtype)[
        rng.integers(0, stoch.shape[-1], stoch.shape[:-1])]
  return out


def step():
  from common import devices
  config, agent, obs, act = _agent()
  batch = _batch(agent, obs, act, 8, config.run.batch_length + agent.replay_context, 0)
  state = agent.init(jax.random.PRNGKey(0))
  single = jax.jit(agent.train)
  state1, metrics1 = jax.block_until_ready(single(state, batch))
  placement = devices.Placement(config.run)
  sharded = jax.jit(agent.train, out_shardings=placement.replicated)
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


def distributed(process, port):
  import types
  from common import devices
  # Joins before anything touches a device (building the agent asks for the backend).
  devices.initialize_distributed(types.SimpleNamespace(
      coordinator=f'localhost:{port}', processes=2, process_id=process))
  config, agent, obs, act = _agent()
  placement = devices.Placement(config.run)
  state = placement.put_state(agent.init(jax.random.PRNGKey(0)))
  train = jax.jit(agent.train, donate_argnums=0, out_shardings=placement.replicated)
  length = config.run.batch_length + agent.replay_context
  for index in range(3):
    local = _batch(agent, obs, act, 8 // 2, length, seed=10 * index + process)
    state, metrics = train(state, placement.put_batch(local))
    loss = float(jax.block_until_ready(metrics['loss']))
  print(json.dumps({'process': process, 'processes': jax.process_count(),
                    'devices': placement.train_devices, 'loss': loss,
                    'step': int(state.step)}))


if __name__ == '__main__':
  if sys.argv[1] == 'step':
    step()
  elif sys.argv[1] == 'distributed':
    distributed(int(sys.argv[2]), int(sys.argv[3]))

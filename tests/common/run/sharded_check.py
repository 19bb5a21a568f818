"""Run in a subprocess with 4 virtual CPU devices (tests/common/run/test_devices.py).

`step`: one DreamerV3 (debug size, vector observations) train step on the same batch, single device vs split
over 4 devices with common.run.devices.Placement; prints the largest differences as JSON.
`world_models`: World Models' VAE and MDN-RNN steps, single device vs 4.
`loop`: the shared train loop (tiny agent) on 4 train devices, acting on device 1.
`distributed PROCESS PORT LOGDIR`: one of two processes of a jax.distributed run (tiny
agent). Each feeds its own half of a global batch and both take three sharded steps; the
loss is printed beside the same steps on the whole batch in one process. Then both run the
shared train loop into LOGDIR with clocks that fire at different times on the two hosts;
process 1 alone gets a SIGTERM from its env at agent step 150. A second run of the same
loop resumes and finishes; both runs' summaries are printed.
`distributed_world_models PROCESS PORT LOGDIR`: World Models' vae and mdnrnn stages on two
processes.
"""
import json
import sys

import jax
import numpy as np


def _agent():
  from common.envs.spaces import Space
  from common.run import config as config_lib
  from dreamer import agent as agent_lib
  from dreamer import configs
  config = config_lib.parse(['--env', 'gym_CartPole-v1', '--size', 'debug', '--logdir', '/tmp/s',
                             '--set', 'run.batch_size=8'], configs.PRESETS)
  obs = {'vector': Space(np.float32, (4,)), 'reward': Space(np.float32, ()),
         'is_first': Space(bool, ()), 'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
  act = Space(np.int32, (), 0, 4)
  return config, agent_lib.make_agent(config, obs, act), obs, act


def step():
  from common.run import devices
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


def world_models():
  """World Models' V (VAE) and M (MDN-RNN) train steps, single device vs 4 (data parallel
  through world_models_ha.vm_stages.placement_for), on the same batch."""
  import optax
  BATCH = 8  # pylint: disable=invalid-name
  from common.run import config as config_lib
  from world_models_ha import configs, mdnrnn, models, vae, vm_stages
  config = config_lib.parse(['--env', 'car_racing', '--logdir', '/tmp/s'], configs.PRESETS)
  vae_model, rnn_model, _ = models.build_models(config)
  rng = np.random.default_rng(0)
  key = jax.random.PRNGKey(0)
  fast = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}
  vae_params = vae.init_params(vae_model, key)
  # Plain SGD: Adam's first step is lr * sign(g), which turns float noise in near-zero
  # gradients into full-size differences; what is compared is the data-parallel gradient.
  optimizer = optax.sgd(1e-4)
  vae_state = {'params': vae_params, 'opt_state': optimizer.init(vae_params), 'key': key}
  images = rng.uniform(size=(BATCH, 64, 64, 3)).astype(np.float32)
  rnn_state = vm_stages._rnn_state(config, rnn_model, key)  # pylint: disable=protected-access
  z, steps, actions = config.agent.vae.z_size, 6, 3
  batch = {'mean': rng.normal(size=(BATCH, steps + 1, z)).astype(np.float32),
           'logvar': rng.normal(size=(BATCH, steps + 1, z)).astype(np.float32) * 0.1 - 1,
           'action': rng.uniform(-1, 1, (BATCH, steps, actions)).astype(np.float32),
           'done': np.zeros((BATCH, steps), np.float32), 'mask': np.ones((BATCH, steps), bool)}
  if rnn_model.restart_input:
    batch['restart'] = np.zeros((BATCH, steps), np.float32)
  carry = mdnrnn.initial_carry(rnn_model, BATCH)
  vae_step = vm_stages.vae_train_step(vae_model, optimizer, config.agent.vae.kl_tolerance)
  rnn_state = dict(rnn_state, opt_state=optimizer.init(rnn_state['params']))
  rnn_step = vm_stages.mdnrnn_train_step(rnn_model, optimizer, config.agent.mdnrnn.done_weight)
  placement = vm_stages.placement_for(config, BATCH)
  out = {'devices': placement.train_devices}
  for name, step_fn, state, args in (('vae', vae_step, vae_state, (images,)),
                                     ('mdnrnn', rnn_step, rnn_state, (batch, carry))):
    single = jax.jit(step_fn, compiler_options=fast)(state, *args)
    sharded = jax.jit(step_fn, compiler_options=fast)(
        placement.put_state(state), *[placement.put_batch(arg) for arg in args])
    params = [jax.tree.leaves(result[0]['params']) for result in (single, sharded)]
    out[name] = {
        'loss': [float(single[1][f'{name}/loss']), float(sharded[1][f'{name}/loss'])],
        'max_param_diff': max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                              for a, b in zip(*params)),
        'param_scale': max(float(np.max(np.abs(np.asarray(a)))) for a in params[0]),
        'batch_shards': len(placement.put_batch(args[0] if name == 'vae' else args[0]['mean'])
                            .addressable_shards)}
  print(json.dumps(out))


def _tiny():
  """The train loop tests' linear-regression agent (compiles in a second)."""
  from tests.common.run import test_train_loop
  return test_train_loop


def distributed(process, port, logdir):
  import types
  from common.run import devices
  # Joins before anything touches a device (building an agent may ask for the backend).
  devices.initialize_distributed(types.SimpleNamespace(
      coordinator=f'localhost:{port}', processes=2, process_id=process))
  tiny = _tiny()
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
  out = {'process': process, 'processes': jax.process_count(),
         'devices': placement.train_devices, 'loss': loss,
         'alone_loss': float(alone_metrics['loss']), 'calls': int(state['calls'])}
  out['runs'] = _distributed_loop(process, logdir)
  out['disagreement'] = _disagreement(process)
  print(json.dumps(out))


def distributed_world_models(process, port, logdir):
  """World Models' vae and mdnrnn stages (debug size) on both hosts, on rollouts and a series
  that process 0 writes; prints the steps of each stage's checkpoints."""
  import os
  import types
  from common.run import devices
  devices.initialize_distributed(types.SimpleNamespace(
      coordinator=f'localhost:{port}', processes=2, process_id=process))
  from jax._src import distributed
  from common.run import config as config_lib
  from common.run.checkpoint import list_steps
  from common.run.logging import Logger
  from world_models_ha import configs, rollouts, vm_stages
  config = config_lib.parse(['--env', 'car_racing', '--size', 'debug', '--logdir', logdir],
                            configs.PRESETS)
  rng = np.random.default_rng(0)
  length, episodes, z = 12, 3, config.agent.vae.z_size
  if process == 0:
    for episode in range(episodes):
      rollouts.save_episode(os.path.join(logdir, 'rollouts'), episode, {
          'obs': rng.integers(0, 255, (length, 64, 64, 3), np.uint8),
          'action': rng.uniform(-1, 1, (length, 3)).astype(np.float32),
          'reward': np.zeros(length, np.float32), 'done': np.zeros(length, bool)})
    np.savez(os.path.join(logdir, 'series.npz'),
             mean=rng.normal(size=(episodes, length, z)).astype(np.float32),
             logvar=np.full((episodes, length, z), -1, np.float32),
             action=rng.uniform(-1, 1, (episodes, length, 3)).astype(np.float32),
             reward=np.zeros((episodes, length), np.float32),
             done=np.zeros((episodes, length), bool), mask=np.ones((episodes, length), bool),
             layout=np.int32(vm_stages.SERIES_LAYOUT))
  distributed.global_state.client.wait_at_barrier('world_models_data', 60_000)
  logger = Logger(os.path.join(logdir, f'log{process}'), tensorboard=False,
                  stream=open(os.devnull, 'w'))
  vm_stages.train_vae(config, logger)
  vm_stages.train_mdnrnn(config, logger)
  logger.close()
  print(json.dumps({stage: list_steps(os.path.join(logdir, stage))
                    for stage in ('vae', 'mdnrnn')}))


def _disagreement(process):
  """What HostSync says when the hosts' agent steps differ (each host must see it)."""
  from common.run import host_sync
  sync = host_sync.HostSync()
  try:
    for _ in range(host_sync.EVERY):
      sync.agree(100 + process, False, lambda: True, log=lambda: False)
  except host_sync.HostDisagreement as error:
    return str(error)
  return None


def _distributed_loop(process, logdir):
  """The train loop on both hosts, stopped by a signal on one, then resumed."""
  import os
  import pathlib
  from common.run import train_loop
  tiny = _tiny()

  def make_env(env_config, num, seed):
    env = train_loop._default_make_env(env_config, num, seed)  # pylint: disable=protected-access
    if process == 1 and num == 2:
      env = _SignalAt(env, 75)   # agent step 150 (2 envs)
    return env
  # Each host's clocks fire at its own times: only process 0's decide.
  every = 0.01 if process == 0 else 0.023
  config = tiny._config(pathlib.Path(logdir), name='', batch_size=4, envs=2, steps=300,
                        log_every=every, report_every=every, save_every=every * 50,
                        eval_every=100, eval_episodes=1)
  runs = []
  for _ in range(2):
    summary = train_loop.run(tiny.make_agent, config, make_env=make_env,
                             stream=open(os.devnull, 'w'))
    runs.append({key: summary[key] for key in ('start_step', 'step', 'updates', 'interrupted')})
  return runs


class _SignalAt:
  """A batch env that sends its own process SIGTERM at its `at`-th step (once per process)."""
  sent = False

  def __init__(self, env, at):
    self._env, self._at, self._steps = env, at, 0

  def __getattr__(self, name):
    return getattr(self._env, name)

  def step(self, action):
    self._steps += 1
    if self._steps == self._at and not _SignalAt.sent:
      _SignalAt.sent = True
      import os
      import signal
      os.kill(os.getpid(), signal.SIGTERM)
    return self._env.step(action)


def loop():
  """The shared train loop on 4 train devices, acting on device 1."""
  import os
  import tempfile
  from common.run import train_loop
  tiny = _tiny()
  config = tiny._config(__import__('pathlib').Path(tempfile.mkdtemp()), batch_size=4,
                        policy_devices=(1,), envs=2)
  summary = train_loop.run(tiny.make_agent, config, stream=sys.stdout)
  print(json.dumps({'updates': summary['updates'], 'step': summary['step']}))
  del os


if __name__ == '__main__':
  if sys.argv[1] == 'step':
    step()
  elif sys.argv[1] == 'world_models':
    world_models()
  elif sys.argv[1] == 'loop':
    loop()
  elif sys.argv[1] == 'distributed':
    distributed(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
  elif sys.argv[1] == 'distributed_world_models':
    distributed_world_models(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

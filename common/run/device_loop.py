"""`--loop device`: the shared training loop as one compiled program, for JAX-native envs.

The schedule of `common/run/train_loop.py` (random prefill, `run.train_ratio` updates per agent
step counted exactly as `TrainRatio` does, training once replay holds `run.train_starts`
window starts, V3's replay-context latents written back, the non-finite guard) with every
piece on the device: the env (`common/envs/jax_env.py`) steps `run.envs` envs, the agent's
own pure `policy` and `train` (`common/agent.py`) act and learn, and the replay is a ring
buffer in device memory (`common/replay/device.py`). `jax.lax.scan` runs `run.chunk` env
iterations per call; between calls the host writes metric lines, episode scores,
TensorBoard, reports and checkpoints, and answers SIGINT/SIGTERM (save, then stop).

Seeds as a vmap (`run.seeds` = S): S independent agents (own parameters, optimizer state,
replay, envs and RNG) in one program. The agent's functions and the replay are vmapped over
S; the S x N envs step as one batch (one key per env, so no seed sees another's). Every
seed counts the same steps and updates. With S > 1, `run.logdir` holds `seed<k>/` run
directories (metrics, scores, TensorBoard, config) beside the shared `checkpoints/`.

A checkpoint holds the agent (for one seed in the Python loop's layout, so `--eval_only` and
`--from_checkpoint` read it; with S seeds stacked, which `--eval_only` evaluates seed by
seed), and as its `loop` item the replay, the envs, the policy's
carry and the counters, so a resumed run continues exactly where it was saved.

Evaluation (`run.eval_every`): between chunks, once `run.eval_every` agent steps have passed,
one compiled while loop plays `run.eval_episodes` episodes of every seed's policy in mode
'eval' on `run.eval_envs` fresh envs per seed, logged as the Python loop logs them.

Differences from the Python loop: the RNG streams differ (random prefill actions, replay
sampling); V3's replay-context latents are written back at once, not one update late;
evaluation falls between chunks, so up to `run.chunk` iterations after it is due.
"""
import fractions
import functools
import os
import signal
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from common import envs as envs_lib
from common.replay import device as device_replay
from common.run import checkpoint as checkpoint_lib
from common.run import config as config_lib
from common.run import logging as logging_lib
from common.run import memory
from common.run import schedule

CHUNK_STEPS = 1000   # agent steps per compiled call when run.chunk is 0
MEMORY_SHARE = 0.5   # of the device's memory the replay may take (the rest: the train step)


class LoopState(NamedTuple):
  """Everything the program carries from one iteration to the next (checkpointed)."""
  agent: Any          # [S, ...]
  carry: Any          # policy carry [S, N, ...]
  env: Any            # env states [S * N, ...]
  obs: dict           # the observations the policy acts on next, [S, N, ...]
  replay: Any         # DeviceReplay [S, ...]
  keys: jax.Array     # [S] RNG keys (policy, random actions, envs, sampling)
  episode: dict       # running episode statistics [S, N]
  step: jax.Array     # agent steps of each seed (int32)
  updates: jax.Array  # updates of each seed, pretrain included
  start: jax.Array    # the agent step the train ratio counts from
  trainable: jax.Array
  guard: tuple        # non-finite guard (current, longest, last finite step), each [S]


def check(config):
  """ValueError (one line) where `--loop device` cannot run this config."""
  run = config.run
  if run.loop != 'device':
    if run.seeds > 1:
      raise ValueError(f'--seeds {run.seeds} needs --loop device (the Python loop runs one '
                       'agent; launch several runs with experiments/sweep.py instead).')
    return
  try:
    envs_lib.check_jax(config.env)
  except ValueError as error:
    raise ValueError(f'--loop device: {error} Use --loop python.') from None
  if run.eval_only or run.offline_replay:
    raise ValueError('--loop device trains (and evaluates every run.eval_every): --eval_only '
                     'and run.offline_replay belong to --loop python (which reads its '
                     'checkpoints).')
  if jax.process_count() > 1:
    raise ValueError('--loop device runs on one host; several hosts (run.processes) belong to '
                     '--loop python.')
  if len(jax.local_devices()) > 1 and (run.train_devices or run.policy_devices != (0,)):
    raise ValueError('--loop device runs on one device; run.train_devices and '
                     'run.policy_devices belong to --loop python.')


class _Rate:
  """`TrainRatio`'s `floor((step - start) * ratio / (B * T))` in int32 without overflow."""

  def __init__(self, ratio, batch_steps):
    # Exact for every ratio a config writes (32, 512, 0.5, 0.1); TrainRatio's Fraction of a
    # float such as 0.1 differs from it only past 2**16 steps at an exact boundary.
    rate = fractions.Fraction(ratio).limit_denominator(1 << 16) / batch_steps
    self.p, self.q = rate.numerator, rate.denominator
    if self.p * self.q >= 1 << 31:
      raise ValueError(f'run.train_ratio={ratio} with batch {batch_steps}: too large for the '
                       'device loop\'s int32 accounting.')

  def owed(self, steps):
    whole, part = steps // self.q, steps % self.q
    return whole * self.p + (part * self.p) // self.q


# Evaluation's step cap per episode for envs without a time limit (env.time_limit=0).
EVAL_STEPS_PER_EPISODE = 100_000


class DeviceLoop:
  """The compiled pieces of one `--loop device` run; `run` drives them."""

  def __init__(self, agent, env, config, obs_space, act_space):
    run = config.run
    self.agent, self.env, self.config = agent, env, config
    self.seeds, self.num_envs = int(run.seeds), int(run.envs)
    self.act_space = act_space
    self.window = run.batch_length + agent.replay_context
    self.rate = _Rate(run.train_ratio, run.batch_size * run.batch_length)
    self.chunk = int(run.chunk) or max(1, CHUNK_STEPS // self.num_envs)
    self.log_keys = sorted(key for key in obs_space if key.startswith('log/'))
    # One stored step: the observation (no log keys), the action, the policy's entries.
    spec = {key: (space.shape, space.dtype) for key, space in schedule.strip_log(obs_space).items()}
    spec['action'] = (act_space.shape, act_space.dtype)
    self.empty_entries = {}
    if agent.policy_entries:
      entries = jax.eval_shape(agent.policy_entries, agent.init_policy_carry(1))
      self.empty_entries = {key: (value.shape[1:], value.dtype) for key, value in entries.items()}
      spec.update(self.empty_entries)
    self.spec = spec
    self.stream_size = device_replay.stream_size(config.replay.capacity, self.num_envs)
    self.replay_bytes = self.seeds * device_replay.nbytes(spec, self.num_envs, self.stream_size)
    self._chunk_fn = jax.jit(self._chunk, donate_argnums=0)
    self._report_fn = jax.jit(self._report)
    self._evaluate_fn = jax.jit(self._evaluate)

  # --- the program ---------------------------------------------------------------

  def init(self, seed):
    """The state before the first iteration: seeds `seed .. seed + S - 1`."""
    agent, env = self.agent, self.env
    num, seeds = self.num_envs, self.seeds

    def one(seed_index):
      init_key, key = jax.random.split(jax.random.PRNGKey(seed_index))   # as the Python loop
      state = agent.init(init_key)
      key, env_key = jax.random.split(key)
      return state, key, jax.random.split(env_key, num)
    states, keys, env_keys = jax.vmap(one)(jnp.arange(seeds) + seed)
    env_state = env.initial(env_keys[0, 0], seeds * num)
    zeros = jnp.zeros((seeds * num,) + self.act_space.shape, self.act_space.dtype)
    env_state, obs = env.step(env_state, zeros, env_keys.reshape((seeds * num,) + env_keys.shape[2:]))
    obs = jax.tree.map(lambda x: x.reshape((seeds, num) + x.shape[1:]), obs)
    carry = jax.vmap(lambda _: agent.init_policy_carry(num))(jnp.arange(seeds))
    episodes = self.config.replay.sample == 'episodes'
    replay = jax.vmap(lambda _: device_replay.init(self.spec, num, self.stream_size, episodes))(
        jnp.arange(seeds))
    episode = {'score': jnp.zeros((seeds, num), jnp.float32),
               'length': jnp.zeros((seeds, num), jnp.int32)}
    for key in self.log_keys:
      episode[key] = jnp.zeros((seeds, num), obs[key].dtype)
    zero = jnp.int32(0)
    guard = tuple(jnp.full((seeds,), value, jnp.int32) for value in (0, 0, -1))
    return LoopState(states, carry, env_state, obs, replay, keys, episode, zero, zero,
                     jnp.int32(self.config.run.prefill), jnp.bool_(False), guard)

  def _random_actions(self, keys):
    space, num = self.act_space, self.num_envs
    if space.discrete:
      return jax.vmap(lambda k: jax.random.randint(
          k, (num,) + space.shape, int(space.low.min()), int(space.high.max()) + 1,
          space.dtype))(keys)
    low = jnp.asarray(np.maximum(space.low, -1e6))
    high = jnp.asarray(np.minimum(space.high, 1e6))
    return jax.vmap(lambda k: jax.random.uniform(
        k, (num,) + space.shape, space.dtype, low, high))(keys)

  def _act(self, ls, keys):
    agent, num = self.agent, self.num_envs
    obs = schedule.strip_log(ls.obs)

    def act_random():
      entries = {key: jnp.zeros((self.seeds, num) + shape, dtype)
                 for key, (shape, dtype) in self.empty_entries.items()}
      return self._random_actions(keys[:, 1]), ls.carry, entries

    def act_policy():
      policy = functools.partial(agent.policy, mode='train')
      action, carry = jax.vmap(policy)(ls.agent, ls.carry, obs, keys[:, 0])
      entries = jax.vmap(agent.policy_entries)(carry) if agent.policy_entries else {}
      return action.astype(self.act_space.dtype), carry, entries
    return jax.lax.cond(ls.step < self.config.run.prefill, act_random, act_policy)

  def _track(self, episode, obs):
    """`common/run/driver.py`'s episode statistics, for every env at once."""
    first, reward = obs['is_first'], obs['reward']
    new = {'score': jnp.where(first, 0.0, episode['score']) + reward,
           'length': jnp.where(first, 0, episode['length'] + 1)}
    for key in self.log_keys:
      value, old = obs[key], episode[key]
      if jnp.issubdtype(value.dtype, jnp.floating):
        new[key] = jnp.where(first, 0, old) + value
      else:
        new[key] = jnp.maximum(jnp.where(first, jnp.zeros_like(old), old), value)
    return new

  def update(self, states, batch):
    """One update of every seed: the agent's own `train`, vmapped over seeds."""
    return jax.vmap(self.agent.train)(states, batch)

  def _train_many(self, ls, due, keys, sums):
    """`due` updates of every seed (a while loop: the count is known only on the device);
    `keys` [S]: each seed samples its replay with its own."""
    agent, run = self.agent, self.config.run

    def one_update(carry):
      done, ls, keys, sums = carry
      split = jax.vmap(jax.random.split)(keys)
      keys, sample_keys = split[:, 0], split[:, 1]
      sample = functools.partial(device_replay.sample, batch=run.batch_size,
                                 length=self.window, online=self.config.replay.online,
                                 prioritize_ends=self.config.replay.prioritize_ends)
      batch, where, replay = jax.vmap(sample)(ls.replay, sample_keys)
      state, metrics = self.update(ls.agent, batch)
      entries = metrics.pop('replay', None)
      if entries is not None:
        replay = jax.vmap(functools.partial(device_replay.update, offset=agent.replay_context))(
            replay, where, values=entries)
      guard = ls.guard
      if 'nonfinite' in metrics:
        guard = jax.vmap(schedule.guard_update, in_axes=(0, 0, None))(
            guard, metrics['nonfinite'], ls.step)
      scalars = {k: v for k, v in metrics.items() if v.ndim == 1}
      sums = {'count': sums['count'] + 1,
              **{k: sums[k] + scalars[k].astype(jnp.float32) for k in scalars}}
      ls = ls._replace(agent=state, replay=replay, guard=guard, updates=ls.updates + 1)
      return done + 1, ls, keys, sums

    _, ls, _, sums = jax.lax.while_loop(
        lambda carry: carry[0] < due, one_update, (jnp.int32(0), ls, keys, sums))
    return ls, sums

  def _iteration(self, ls, sums):
    run, num, seeds = self.config.run, self.num_envs, self.seeds
    split = jax.vmap(lambda k: jax.random.split(k, 5))(ls.keys)
    keys, act_keys, env_keys, train_keys = split[:, 0], split[:, 1:3], split[:, 3], split[:, 4]
    action, carry, entries = self._act(ls, act_keys)
    obs = ls.obs
    step_data = {**schedule.strip_log(obs), 'action': action, **entries}
    replay = jax.vmap(device_replay.add)(ls.replay, step_data)
    episode = self._track(ls.episode, obs)
    ended = {'done': obs['is_last'], 'score': episode['score'], 'length': episode['length'],
             **{key: episode[key] for key in self.log_keys}}
    env_keys = jax.vmap(lambda k: jax.random.split(k, num))(env_keys)
    flat = lambda x: x.reshape((seeds * num,) + x.shape[2:])
    env_state, new_obs = self.env.step(ls.env, flat(action), flat(env_keys))
    new_obs = jax.tree.map(lambda x: x.reshape((seeds, num) + x.shape[1:]), new_obs)
    step = ls.step + num
    ls = ls._replace(carry=carry, env=env_state, obs=new_obs, replay=replay,
                     keys=keys, episode=episode, step=step)
    # The train loop's train-ratio accounting (schedule.TrainRatio, and when training starts).
    # Every seed holds as many windows, except with episode sampling: wait for the fewest.
    held = jnp.min(jax.vmap(functools.partial(device_replay.starts, length=self.window))(replay))
    ready = (step >= run.prefill) & (held >= max(1, run.train_starts))
    start = jnp.where(ready & ~ls.trainable & (ls.updates == 0) & (step > ls.start), step,
                      ls.start)
    trainable = ls.trainable | ready
    owed = jnp.where(trainable & (step >= start),
                     run.pretrain + self.rate.owed(jnp.maximum(step - start, 0)), 0)
    due = jnp.maximum(owed - ls.updates, 0)
    ls = ls._replace(start=start, trainable=trainable)
    ls, sums = self._train_many(ls, due, train_keys, sums)
    return ls, sums, ended

  def _chunk(self, ls, steps):
    """`self.chunk` iterations (those past `steps` do nothing; an argument, so a resumed run
    with a larger run.steps reuses the compiled program). Returns the new state, the
    mean train metrics of each seed with their update count, and per iteration the step
    before it and each env's episode statistics (`done` where one ended)."""
    sums = {'count': jnp.int32(0),
            **{k: jnp.zeros((self.seeds,), jnp.float32) for k in self._metric_names}}

    def body(carry, _):
      ls, sums = carry
      before = ls.step

      def active():
        return self._iteration(ls, sums)

      def idle():
        shape = (self.seeds, self.num_envs)
        ended = {'done': jnp.zeros(shape, bool), 'score': jnp.zeros(shape, jnp.float32),
                 'length': jnp.zeros(shape, jnp.int32),
                 **{key: jnp.zeros(shape, ls.episode[key].dtype) for key in self.log_keys}}
        return ls, sums, ended
      ls, sums, ended = jax.lax.cond(ls.step < steps, active, idle)
      return (ls, sums), {'step': before, **ended}

    (ls, sums), ys = jax.lax.scan(body, (ls, sums), None, length=self.chunk)
    return ls, sums, ys

  @functools.cached_property
  def _metric_names(self):
    """The train metrics that are one scalar per seed (what a metric line averages)."""
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.PRNGKey(0), self.seeds))
    state = jax.eval_shape(jax.vmap(self.agent.init), keys)
    batch = {key: jax.ShapeDtypeStruct((self.seeds, self.config.run.batch_size, self.window)
                                       + tuple(shape), dtype)
             for key, (shape, dtype) in self.spec.items()}
    _, metrics = jax.eval_shape(self.update, state, batch)
    return tuple(k for k, v in metrics.items() if k != 'replay' and v.ndim == 1)

  def _report(self, ls, key):
    """The agent's report for seed 0 on a uniform batch of its replay."""
    replay = jax.tree.map(lambda x: x[0], ls.replay)
    batch, _, _ = device_replay.sample(replay, key, self.config.run.batch_size, self.window)
    return self.agent.report(jax.tree.map(lambda x: x[0], ls.agent), batch)

  def _evaluate(self, agents, key):
    """The Python loop's `evaluate` for every seed at once: `run.eval_episodes` episodes of
    the policy in mode 'eval' on `run.eval_envs` fresh envs per seed, in one while loop.
    Returns per seed the episodes in the order they ended (`score`, `length`, log stats
    [S, eval_episodes]) and how many ended (`count` [S], at least eval_episodes unless the
    step cap, eval_episodes x the env's time limit, ran out first)."""
    agent, run, seeds = self.agent, self.config.run, self.seeds
    num, episodes = int(run.eval_envs), int(run.eval_episodes)
    limit = episodes * (self.config.env.time_limit or EVAL_STEPS_PER_EPISODE)
    flat = lambda x: x.reshape((seeds * num,) + x.shape[2:])
    unflat = lambda tree: jax.tree.map(lambda x: x.reshape((seeds, num) + x.shape[1:]), tree)
    key, env_key, first_key = jax.random.split(key, 3)
    zeros = jnp.zeros((seeds * num,) + self.act_space.shape, self.act_space.dtype)
    env_state, obs = self.env.step(self.env.initial(env_key, seeds * num), zeros,
                                   jax.random.split(first_key, seeds * num))
    obs = unflat(obs)
    episode = {'score': jnp.zeros((seeds, num), jnp.float32),
               'length': jnp.zeros((seeds, num), jnp.int32),
               **{key: jnp.zeros((seeds, num), obs[key].dtype) for key in self.log_keys}}
    results = {name: jnp.zeros((seeds, episodes), value.dtype) for name, value in episode.items()}
    carry = jax.vmap(lambda _: agent.init_policy_carry(num))(jnp.arange(seeds))
    policy = jax.vmap(functools.partial(agent.policy, mode='eval'))
    rows = jnp.broadcast_to(jnp.arange(seeds)[:, None], (seeds, num))

    def body(loop):
      t, env_state, obs, carry, key, episode, results, count = loop
      key, act_key, step_key = jax.random.split(key, 3)
      action, carry = policy(agents, carry, schedule.strip_log(obs),
                             jax.random.split(act_key, seeds))
      episode = self._track(episode, obs)
      done = obs['is_last']
      # Each seed's episodes fill its slots in the order they end; the rest are dropped.
      slot = jnp.where(done, count[:, None] + jnp.cumsum(done, axis=1) - 1, episodes)
      results = {name: results[name].at[rows, slot].set(episode[name], mode='drop')
                 for name in results}
      env_state, obs = self.env.step(env_state, flat(action.astype(self.act_space.dtype)),
                                     jax.random.split(step_key, seeds * num))
      return (t + 1, env_state, unflat(obs), carry, key, episode, results,
              count + done.sum(1, dtype=jnp.int32))

    loop = (jnp.int32(0), env_state, obs, carry, key, episode, results,
            jnp.zeros((seeds,), jnp.int32))
    loop = jax.lax.while_loop(lambda loop: (loop[0] < limit) & jnp.any(loop[7] < episodes),
                              body, loop)
    return {**loop[6], 'count': loop[7]}

  # --- host side -------------------------------------------------------------------

  def evaluate(self, agents, key):
    return self._evaluate_fn(agents, key)

  def held_steps(self, step):
    """Steps each seed's replay holds after `step` agent steps."""
    return min(step, self.stream_size * self.num_envs)

  def run_chunk(self, ls):
    return self._chunk_fn(ls, jnp.int32(self.config.run.steps))

  def report(self, ls, key):
    return self._report_fn(ls, key)


def run(make_agent, config, stream=None, fit=None):
  """Trains with `--loop device`; returns the summary of `train_loop.run` (per seed 0)."""
  stream = stream or sys.stdout
  check(config)
  run_config = config.run
  env = envs_lib.make_jax(config.env)
  obs_space = schedule.strip_log(env.obs_space)
  act_space = env.act_space
  if fit is not None:
    config = fit(config, obs_space, act_space)
    run_config = config.run
  agent = make_agent(config, obs_space, act_space)
  loop = DeviceLoop(agent, env, config, env.obs_space, act_space)
  have = memory.device_bytes()
  if loop.replay_bytes > MEMORY_SHARE * have:
    print(f'--loop device: error: the replay needs {memory.gib(loop.replay_bytes)} of device '
          f'memory ({run_config.seeds} seed(s) x replay.capacity={config.replay.capacity} '
          f'steps) but may take half of the device\'s {memory.gib(have)}; lower '
          f'replay.capacity (this run never holds more than run.steps={run_config.steps}).',
          file=sys.stderr)
    raise SystemExit(2)
  logdir = os.path.abspath(run_config.logdir or config_lib.default_logdir(config))
  seeds = run_config.seeds
  seed_dirs = ([logdir] if seeds == 1 else
               [os.path.join(logdir, f'seed{run_config.seed + s}') for s in range(seeds)])
  for s, directory in enumerate(seed_dirs):
    os.makedirs(directory, exist_ok=True)
    seed_config = config_lib.set_value(config, 'run.seed', run_config.seed + s)
    config_lib.save(seed_config, os.path.join(directory, 'config.yaml'))
  if seeds > 1:
    config_lib.save(config, os.path.join(logdir, 'config.yaml'))
  devnull = open(os.devnull, 'w')
  loggers = [logging_lib.Logger(directory, run_config.steps, stream=stream if s == 0 else devnull,
                                verbose=run_config.verbose)
             for s, directory in enumerate(seed_dirs)]
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(logdir, 'checkpoints'),
                                             run_config.keep_checkpoints)
  print(f'--loop device: {seeds} seed(s) x {run_config.envs} {config.env.name} envs, '
        f'{loop.chunk} iterations per call, replay {memory.gib(loop.replay_bytes)} on '
        f'{jax.devices()[0].device_kind}.', file=stream)
  signals = schedule.StopSignals()
  signals.install()
  try:
    return _train(loop, config, loggers, checkpointer, signals, stream)
  finally:
    signals.restore()
    for logger in loggers:
      logger.close()
    devnull.close()
    checkpointer.close()


def _checkpoint_parts(ls, seeds):
  """(state, loop) of a checkpoint: one seed's agent in the Python loop's layout."""
  if seeds == 1:
    state = {'agent': jax.tree.map(lambda x: x[0], ls.agent), 'policy_key': ls.keys[0]}
  else:
    state = {'agent': ls.agent, 'policy_key': ls.keys}
  return state, ls._replace(agent=None, keys=None)


def _from_parts(state, rest, seeds):
  if seeds == 1:
    return rest._replace(agent=jax.tree.map(lambda x: x[None], state['agent']),
                         keys=state['policy_key'][None])
  return rest._replace(agent=state['agent'], keys=state['policy_key'])


def _train(loop, config, loggers, checkpointer, signals, stream):
  run_config = config.run
  seeds = run_config.seeds
  ls = jax.jit(loop.init, static_argnums=0)(run_config.seed)
  if checkpointer.latest_step() is not None:
    state, rest = _checkpoint_parts(ls, seeds)
    state, meta, rest = checkpointer.restore(state, loop=rest)
    ls = _from_parts(state, rest, seeds)
    for logger in loggers:
      logger.forget_after(int(ls.step))
    print(f'Resumed from checkpoint {checkpointer.directory}/{int(ls.step)}: agent step '
          f'{int(ls.step)}, {int(ls.updates)} updates.', file=stream)
  elif run_config.from_checkpoint:
    directory, step = checkpoint_lib.resolve(run_config.from_checkpoint)
    source = checkpoint_lib.Checkpointer(directory, keep=10 ** 9)
    state, _ = _checkpoint_parts(ls, seeds)
    state, _ = source.restore(state, step)
    source.close()
    ls = ls._replace(agent=_from_parts(state, ls, seeds).agent)   # this run's own RNG
    print(f'Initialised the agent from {directory}.', file=stream)
  if run_config.train_ratio == 0:
    print('run.train_ratio=0: this run only collects experience (replay, scores); the agent is '
          'never trained.', file=stream)
  # Distinct buffers for every leaf: the chunk donates them all.
  ls = jax.tree.map(lambda x: jnp.array(x, copy=True), ls)
  start_step = int(ls.step)
  report_key = jax.random.PRNGKey(run_config.seed + 1)
  log_timer = schedule.Timer(run_config.log_every)
  report_timer = schedule.Timer(run_config.report_every)
  save_timer = schedule.Timer(run_config.save_every)
  summary = {'start_step': start_step, 'interrupted': False, 'eval_scores': []}
  next_eval = start_step + run_config.eval_every if run_config.eval_every else None

  def save():
    step = int(ls.step)
    state, rest = _checkpoint_parts(ls, seeds)
    meta = {'agent_steps': step, 'updates': int(ls.updates), 'train_start': int(ls.start),
            'loop': 'device', 'seeds': seeds, 'first_seed': run_config.seed}
    checkpointer.save(step, state, meta, loop=rest)

  step = start_step
  while step < run_config.steps:
    ls, sums, ys = loop.run_chunk(ls)
    ys, sums, step, updates, guard = jax.device_get(
        (ys, sums, ls.step, ls.updates, ls.guard[1]))
    step = int(step)
    _write_episodes(loggers, ys, loop.log_keys)
    if sums['count']:
      for s, logger in enumerate(loggers):
        logger.add({k: v[s] / sums['count'] for k, v in sums.items() if k != 'count'},
                   prefix='train')
    if int(np.max(guard)) >= run_config.max_nonfinite:
      raise schedule.NonFiniteError(
          f'Stopping: {int(np.max(guard))} consecutive training updates were non-finite and '
          f'skipped (run.max_nonfinite={run_config.max_nonfinite}); resume from the last '
          f'checkpoint in {checkpointer.directory}.')
    if next_eval is not None and step >= next_eval:
      summary['eval_scores'] = _evaluate(loop, ls.agent, loggers, step, run_config)
      next_eval = step + run_config.eval_every
    if report_timer():
      report_key, key = jax.random.split(report_key)
      if int(updates):
        loggers[0].add(jax.device_get(loop.report(ls, key)), prefix='report')
    if log_timer() or step >= run_config.steps:
      for logger in loggers:
        logger.add({'updates': int(updates)}, prefix='run')
        logger.add({'steps': loop.held_steps(step),
                    'gb': loop.replay_bytes / seeds / 2 ** 30}, prefix='replay')
        logger.write(step)
    if signals.received is not None:
      save()
      name = signal.Signals(signals.received).name
      print(f'{name}: saved checkpoint {checkpointer.directory}/{step}; run the same command '
            'to resume.', file=stream)
      summary['interrupted'] = True
      break
    if save_timer() or step >= run_config.steps:
      save()
  summary.update(step=step, updates=int(ls.updates),
                 replay_steps=loop.held_steps(step))
  return summary


def _evaluate(loop, agents, loggers, step, run_config):
  """Evaluation episodes of every seed at agent step `step`, logged as the Python loop's
  (`eval_scores.jsonl`, `eval_episode/*`); returns seed 0's scores."""
  key = jax.random.fold_in(jax.random.PRNGKey(run_config.seed + 10_000), step)
  results = jax.device_get(loop.evaluate(agents, key))
  ended = np.minimum(results['count'], run_config.eval_episodes)   # episodes per seed
  for s, logger in enumerate(loggers):
    for k in range(int(ended[s])):
      stats = {key[4:]: results[key][s, k] for key in loop.log_keys}
      logger.episode(step, float(results['score'][s, k]), int(results['length'][s, k]),
                     mode='eval', **stats)
  return [float(x) for x in results['score'][0, :int(ended[0])]]


def _write_episodes(loggers, ys, log_keys):
  """Episodes that ended in a chunk, in the order the Python driver logs them."""
  done = np.asarray(ys['done'])          # [K, S, N]
  for k, s, n in zip(*np.nonzero(done)):
    stats = {key[4:]: ys[key][k, s, n] for key in log_keys}
    loggers[s].episode(int(ys['step'][k]) + int(n) + 1, float(ys['score'][k, s, n]),
                       int(ys['length'][k, s, n]), **stats)

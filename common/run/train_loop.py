"""The training loop every agent shares: collect, replay, train by ratio, evaluate, save.

As DreamerV3's `embodied/run/train.py`, with the agent as a NamedTuple of pure
functions (`common/agent.py`):

  * random-action prefill for `run.prefill` agent steps, then the agent's
    `policy(state, carry, obs, key, mode='train')`;
  * training starts once replay holds `run.train_starts` window starts (at least one;
    the V3 code waits for batch_size * batch_length) and prefill is over;
  * `run.train_ratio` replayed steps per agent step (DreamerV3's definition):
    after `s` agent steps past the start of training, exactly
    `run.pretrain + floor(s * ratio / (B * T))` updates have run (`TrainRatio`);
    `run.pretrain` updates run at once when training starts, as the V1/V2/PlaNet
    references train before their first collected step;
  * an agent with a replay context (V3) stores its policy's latents with each step,
    trains on windows of K + T steps and writes the trained latents back (one update
    late, so the host never waits on the device for them);
  * evaluation episodes with mode 'eval' on separate envs every `run.eval_every`
    agent steps; metric lines every `run.log_every` s; `report` (videos) every
    `run.report_every` s; a checkpoint every `run.save_every` s and on
    SIGINT/SIGTERM (finish the step, save, return);
  * resume: a logdir holding a checkpoint continues from it (step counter,
    update counter, agent state, policy RNG) with the replay chunks on disk;
  * `run.eval_only` evaluates a checkpoint; `run.offline_replay` trains from a
    replay directory without stepping an env;
  * non-finite guard: an agent that skips a non-finite update reports
    `metrics['nonfinite'] = 1`; `run.max_nonfinite` in a row stop the run.

Host-device syncs stay out of the inner loop: train metrics stay on device
until a metric line is written. Batches are sampled `run.prefetch` updates ahead in a
thread and put on the devices there (`common/run/prefetch.py`); the train step is data
parallel over `run.train_devices` and the policy runs on `run.policy_devices`
(`common/run/devices.py`). Over several hosts, the loops agree on their clocks, stop signals and
the start of training (`common/run/host_sync.py`) so that every host enters the same train steps,
reports and checkpoints; host p seeds its envs, replay and actions apart and logs under
`hosts/<p>/` (process 0 in the run directory).
"""
import fractions
import logging as _pylogging
import os
import signal
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np

from common.replay import host as replay_lib
from common.run import checkpoint as checkpoint_lib
from common.run import config as config_lib
from common.run import devices as devices_lib
from common.run import host_sync as host_sync_lib
from common.run import logging as logging_lib
from common.run import prefetch as prefetch_lib
from common.run.driver import Driver
from common.run.schedule import NonFiniteError, StopSignals, Timer, TrainRatio, guard_update, strip_log

_log = _pylogging.getLogger(__name__)
_GUARD_EVERY = 1.0  # seconds between checks of the non-finite guard
_HOST_SEED_STRIDE = 1_000_000  # host p of a multi-host run seeds its envs with run.seed + p * this


def _default_make_env(env_config, num, seed):
  from common import envs  # pylint: disable=g-import-not-at-top
  return envs.make_batch(env_config, num, seed)


class _Policy:
  """Host-side `policy(obs) -> action` over the jitted agent policy with its own carry."""

  def __init__(self, loop, mode, num_envs):
    self._loop = loop
    self._mode = mode
    placement = loop.placement
    self._sharding = (placement.policy_sharding(num_envs)
                      if placement.policy_mesh.devices.size > 1 else None)
    # The carry where the policy returns it (one compile of the policy, not two).
    self._carry = jax.device_put(loop.agent.init_policy_carry(num_envs),
                                 self._sharding or placement.policy_replicated)

  def __call__(self, obs):
    loop = self._loop
    obs = strip_log(obs)
    if self._sharding is not None:
      obs = jax.device_put(obs, self._sharding)
    action, self._carry, loop.policy_key, entries = loop.policy(
        loop.policy_state(), self._carry, obs, loop.policy_key, self._mode)
    loop.last_entries = jax.device_get(entries) if entries else None
    return np.asarray(action)


class _Loop:
  """State of one `run` call; see the module docstring."""

  def __init__(self, make_agent, config, make_env, stream, fit=None):
    self.run_config = run_config = config.run
    self.logdir = os.path.abspath(run_config.logdir or config_lib.default_logdir(config))
    os.makedirs(self.logdir, exist_ok=True)
    self.sync = host_sync_lib.HostSync()
    self.host_dir = host_sync_lib.host_dir(self.logdir)
    # Each host's envs, replay sampling and actions get their own seed; the parameters are
    # initialised from run.seed alone, the same on every host.
    self.host_seed = run_config.seed + _HOST_SEED_STRIDE * self.sync.process
    self.make_env = make_env or _default_make_env
    self.stream = stream
    self.batch_steps = run_config.batch_size * run_config.batch_length
    self.train_env = self.eval_env = None
    offline = bool(run_config.offline_replay)
    if not run_config.eval_only and not offline:
      self.train_env = self.make_env(config.env, run_config.envs, self.host_seed)
    if run_config.eval_only or run_config.eval_every or offline:
      self.eval_env = self.make_env(config.env, run_config.eval_envs, self.host_seed + 10_000)
    spaces_from = self.train_env or self.eval_env
    self.obs_space = strip_log(spaces_from.obs_space)
    self.act_space = spaces_from.act_space
    if fit is not None:
      try:
        config = fit(config, self.obs_space, self.act_space)
      except BaseException:
        self.close_envs()
        raise
    self.config = config
    self.agent = make_agent(config, self.obs_space, self.act_space)
    self.placement = devices_lib.Placement(run_config)
    if self.placement.train_devices > 1 or not self.placement.same_devices:
      print(self.placement.describe() + '.', file=stream)
    key = jax.random.PRNGKey(run_config.seed)
    init_key, policy_key = jax.random.split(key)
    if self.sync.process:
      policy_key = jax.random.fold_in(policy_key, self.sync.process)
    self.state = self.placement.put_state(self.agent.init(init_key))
    self.policy_key = jax.device_put(policy_key, self.placement.policy_replicated)
    self._policy_state = None   # the train state copied where the policy runs, until an update
    agent = self.agent

    def policy_step(state, carry, obs, key, mode):
      key, sample_key = jax.random.split(key)
      action, carry = agent.policy(state, carry, obs, sample_key, mode)
      entries = agent.policy_entries(carry) if agent.policy_entries else {}
      return action, carry, key, entries

    def train_step(state, batch, guard, step):
      state, metrics = agent.train(state, batch)
      if 'nonfinite' in metrics:
        guard = guard_update(guard, metrics['nonfinite'], step)
      return state, metrics, guard
    # One dispatch per env step and per update (RNG split and guard inside).
    self.policy = jax.jit(policy_step, static_argnums=(4,))
    # The state stays replicated over the train devices; the batch arrives split.
    self.train = jax.jit(train_step, donate_argnums=0,
                         out_shardings=self.placement.replicated)
    self.report = jax.jit(self.agent.report, out_shardings=self.placement.replicated)
    self.checkpointer = checkpoint_lib.Checkpointer(
        os.path.join(self.logdir, 'checkpoints'), run_config.keep_checkpoints)
    self.logger = logging_lib.Logger(self.host_dir, run_config.steps, stream=stream,
                                     verbose=run_config.verbose)
    self.step = 0
    self.ratio = None
    self.signals = StopSignals()
    self.pending_metrics = []
    self.window = run_config.batch_length + agent.replay_context   # steps sampled per window
    self.replay_lock = threading.Lock()   # replay writes vs the prefetch thread's sampling
    self.prefetcher = None        # started at the first update when run.prefetch > 0
    self.pending_entries = None   # (where, device entries) of the last update, written next
    self.last_entries = None      # replay entries [N, ...] of the policy's last step
    self.empty_entries = {}       # what a step acted on without the agent's policy stores
    if agent.policy_entries:
      self.empty_entries = jax.tree.map(
          lambda x: np.zeros(x.shape[1:], x.dtype),
          jax.device_get(agent.policy_entries(agent.init_policy_carry(1))))
    # Non-finite guard, kept on device: (current run, longest run, last finite step). Placed
    # as the step returns it, so the second update does not compile the step again.
    self.guard = jax.device_put((jnp.int32(0), jnp.int32(0), jnp.int32(-1)),
                                self.placement.replicated)

  # --- checkpoints --------------------------------------------------------------

  def save(self, replay):
    self.write_entries(replay)
    if replay is not None and replay.directory:
      with self.replay_lock:
        replay.save()
    meta = {'agent_steps': self.step, 'updates': self.ratio.updates if self.ratio else 0,
            'train_start': self.ratio.start if self.ratio else 0,
            'replay': replay.stats() if replay is not None else {}}
    self.checkpointer.save(self.step, {'agent': self.state,
                                       'policy_key': self.placement.stack_hosts(self.policy_key)},
                           meta)
    _log.info('Saved checkpoint %s/%d.', self.checkpointer.directory, self.step)

  def restore(self, checkpointer, step=None):
    target = {'agent': self.state, 'policy_key': self.placement.stack_hosts(self.policy_key)}
    restored, meta = checkpointer.restore(target, step)
    self.set_agent(restored['agent'], self.placement.own_row(restored['policy_key']))
    return meta

  def set_agent(self, state, policy_key):
    """Places an agent state and policy key as the loop holds them."""
    self.state = self.placement.put_state(state)
    self.policy_key = jax.device_put(policy_key, self.placement.policy_replicated)
    self._policy_state = None

  def policy_state(self):
    if self._policy_state is None:
      self._policy_state = self.placement.policy_state(self.state)
    return self._policy_state

  # --- pieces -----------------------------------------------------------------

  def next_batch(self, replay):
    """The next training batch on the train devices, and where in replay it came from."""
    def sample():
      return replay.sample_train(self.run_config.batch_size, self.window)
    if self.run_config.prefetch <= 0:
      batch, where = sample()
      return self.placement.put_batch(batch), where
    if self.prefetcher is None:
      self.prefetcher = prefetch_lib.Prefetcher(
          sample, self.placement.put_batch, self.run_config.prefetch, self.replay_lock)
    return self.prefetcher.get()

  def train_step(self, replay):
    batch, where = self.next_batch(replay)
    self.state, metrics, self.guard = self.train(self.state, batch, self.guard, self.step)
    self._policy_state = None
    entries = metrics.pop('replay', None)
    self.write_entries(replay)
    if entries is not None:
      self.pending_entries = (where, entries)
    self.pending_metrics.append({k: v for k, v in metrics.items() if jnp.ndim(v) == 0})

  def write_entries(self, replay):
    """Writes the previous update's latents back into replay (V3 replay context)."""
    if self.pending_entries is not None and replay is not None:
      where, entries = self.pending_entries
      entries = jax.device_get(self.placement.local_rows(entries))
      with self.replay_lock:
        replay.update(where, self.agent.replay_context, entries)
    self.pending_entries = None

  def check_guard(self):
    current, longest, last_finite = (int(x) for x in jax.device_get(self.guard))
    if longest >= self.run_config.max_nonfinite:
      latest = self.checkpointer.latest_step()
      where = (f'{self.checkpointer.directory}/{latest}' if latest is not None
               else 'none saved yet (restart from scratch with a lower learning rate)')
      last = f'agent step {last_finite}' if last_finite >= 0 else 'no finite update at all'
      raise NonFiniteError(
          f'Stopping: {longest} consecutive training updates were non-finite and skipped '
          f'(run.max_nonfinite={self.run_config.max_nonfinite}); last finite update at {last}; '
          f'resume from checkpoint {where}.')
    del current

  def flush_metrics(self, replay):
    if self.pending_metrics:
      fetched = jax.device_get(self.pending_metrics)
      for metrics in fetched:
        self.logger.add(metrics, prefix='train')
      self.pending_metrics = []
    if replay is not None:
      stats = replay.stats()
      self.logger.add({'steps': stats['steps'], 'gb': stats['gb']}, prefix='replay')
    if self.ratio is not None:
      self.logger.add({'updates': self.ratio.updates}, prefix='run')
    self.logger.write(self.step)

  def do_report(self, replay):
    if replay is None or len(replay) == 0:
      return
    try:
      with self.replay_lock:
        batch = replay.sample(self.run_config.batch_size, self.window)
    except ValueError:
      return
    metrics = jax.device_get(self.report(self.state, self.placement.put_batch(batch)))
    self.logger.add(metrics, prefix='report')

  def evaluate(self, episodes):
    driver = Driver(self.eval_env)
    policy = _Policy(self, 'eval', driver.num_envs)
    scores = []

    def on_episode(episode, worker):
      del worker
      stats = {k: v for k, v in episode.items() if k not in ('score', 'length')}
      self.logger.episode(self.step, episode['score'], episode['length'], mode='eval', **stats)
      scores.append(episode['score'])
    driver.on_episode(on_episode)
    driver.run(policy, episodes=episodes)
    return scores

  def stop_prefetch(self):
    if self.prefetcher is not None:
      self.prefetcher.close()
      self.prefetcher = None

  def close(self):
    self.stop_prefetch()
    self.signals.restore()
    self.logger.close()
    self.checkpointer.close()
    self.close_envs()

  def close_envs(self):
    for env in (self.train_env, self.eval_env):
      if env is not None and hasattr(env, 'close'):
        env.close()


def run(make_agent, config, make_env=None, stream=None, fit=None):
  """Trains (or evaluates) the agent built by `make_agent(config, obs_space, act_space)`.

  Args:
    make_agent: returns a `common.agent.Agent`.
    config: a top-level config with `run` (RunConfig), `env` (EnvConfig) and
      `replay` (ReplayConfig) sections.
    make_env: `(env_config, num, seed) -> BatchEnv`; default `common.envs.make_batch`.
    stream: console stream (default stdout).
    fit: optional `(config, obs_space, act_space) -> config`, called once the env's spaces
      are known and before the agent is built (`common.run.cli.run_main` checks the size fits
      there).
  Returns:
    A summary dict: `start_step`, `step`, `updates`, `replay_steps`, `eval_scores`,
    `interrupted`.
  """
  for section in ('run', 'env', 'replay'):
    if not hasattr(config, section):
      raise TypeError(f'config has no {section!r} section; pass the algorithm\'s top-level Config.')
  loop = _Loop(make_agent, config, make_env, stream or sys.stdout, fit)
  config = loop.config
  try:
    if loop.sync.process == 0:
      config_lib.save(config, os.path.join(loop.logdir, 'config.yaml'))
    if config.run.eval_only:
      return _eval_only(loop)
    return _train(loop)
  finally:
    loop.close()


def _eval_only(loop):
  source = loop.run_config.from_checkpoint or os.path.join(loop.logdir, 'checkpoints')
  directory, step = checkpoint_lib.resolve(source)
  checkpointer = checkpoint_lib.Checkpointer(directory, keep=10 ** 9)
  seeds = int(checkpointer.read_meta(step).get('seeds', 1))
  if seeds > 1:
    return _eval_seeds(loop, checkpointer, step, seeds)
  meta = loop.restore(checkpointer, step)
  checkpointer.close()
  loop.step = int(meta.get('agent_steps', 0))
  print(f'Evaluating checkpoint {directory} at agent step {loop.step}.', file=loop.stream)
  scores = loop.evaluate(loop.run_config.eval_episodes)
  loop.logger.write(loop.step, fps=False)
  return {'start_step': loop.step, 'step': loop.step, 'updates': meta.get('updates', 0),
          'replay_steps': 0, 'eval_scores': scores, 'interrupted': False}


def _eval_seeds(loop, checkpointer, step, seeds):
  """A `--seeds S` checkpoint of the device loop (the agents stacked along a first axis):
  each seed's agent is evaluated in turn, its episodes written to `seed<k>/eval_scores.jsonl`
  under the run directory, as the device loop names its seeds' runs."""
  def stacked(tree):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (seeds,) + jnp.shape(x)), tree)
  try:
    restored, meta = checkpointer.restore(
        {'agent': stacked(loop.state), 'policy_key': stacked(loop.policy_key)}, step)
  finally:
    checkpointer.close()
  loop.step = int(meta.get('agent_steps', 0))
  first_seed = int(meta.get('first_seed', loop.run_config.seed))
  print(f'Evaluating the {seeds} seeds of checkpoint {checkpointer.directory} at agent step '
        f'{loop.step}.', file=loop.stream)
  run_logger, by_seed = loop.logger, {}
  try:
    for index in range(seeds):
      take = lambda tree, index=index: jax.tree.map(lambda x: x[index], tree)
      loop.set_agent(take(restored['agent']), take(restored['policy_key']))
      seed = first_seed + index
      loop.logger = logging_lib.Logger(os.path.join(loop.logdir, f'seed{seed}'),
                                       stream=loop.stream, verbose=loop.run_config.verbose)
      try:
        by_seed[seed] = loop.evaluate(loop.run_config.eval_episodes)
        loop.logger.write(loop.step, fps=False)
      finally:
        loop.logger.close()
      print(f'seed {seed}: mean eval score {np.mean(by_seed[seed]):.4g} over '
            f'{len(by_seed[seed])} episodes.', file=loop.stream)
  finally:
    loop.logger = run_logger
  return {'start_step': loop.step, 'step': loop.step, 'updates': meta.get('updates', 0),
          'replay_steps': 0, 'eval_scores': [s for scores in by_seed.values() for s in scores],
          'eval_scores_by_seed': by_seed, 'interrupted': False}


def _train(loop):
  run_config = loop.run_config
  offline = bool(run_config.offline_replay)
  if offline:
    replay = replay_lib.Replay(config_lib_replay(loop.config), None, loop.host_seed,
                               loop.window)
    replay.load(run_config.offline_replay)
    if run_config.train_ratio <= 0:
      raise ValueError('run.train_ratio must be positive with run.offline_replay (it sets how '
                       'many updates run.steps means).')
  else:
    replay = replay_lib.Replay(config_lib_replay(loop.config),
                               os.path.join(loop.host_dir, 'replay'), loop.host_seed, loop.window)
  start = 0 if offline else run_config.prefill
  # Offline, run.steps counts updates through the ratio alone; pretrain applies online.
  loop.ratio = TrainRatio(run_config.train_ratio, loop.batch_steps, start=start,
                          pretrain=0 if offline else run_config.pretrain)
  if run_config.train_ratio == 0:
    print('run.train_ratio=0: this run only collects experience (replay, scores); the agent is '
          'never trained.', file=loop.stream)
  # Resume, or start from another run's checkpoint.
  if loop.checkpointer.latest_step() is not None:
    meta = loop.restore(loop.checkpointer)
    loop.step = int(meta['agent_steps'])
    loop.ratio.updates = int(meta['updates'])
    loop.ratio.start = int(meta.get('train_start', loop.ratio.start))
    loop.logger.forget_after(loop.step)
    print(f'Resumed from checkpoint {loop.checkpointer.directory}/{loop.step}: agent step '
          f'{loop.step}, {loop.ratio.updates} updates.', file=loop.stream)
  elif run_config.from_checkpoint:
    directory, step = checkpoint_lib.resolve(run_config.from_checkpoint)
    checkpointer = checkpoint_lib.Checkpointer(directory, keep=10 ** 9)
    loop.restore(checkpointer, step)
    checkpointer.close()
    print(f'Initialised the agent from {directory}.', file=loop.stream)
  if not offline and os.path.isdir(replay.directory) and os.listdir(replay.directory):
    loaded = replay.load()
    print(f'Loaded {loaded} replay steps from {replay.directory}.', file=loop.stream)
  start_step = loop.step
  summary = {'start_step': start_step, 'interrupted': False, 'eval_scores': []}

  log_timer = Timer(run_config.log_every)
  report_timer = Timer(run_config.report_every)
  save_timer = Timer(run_config.save_every)
  guard_timer = Timer(_GUARD_EVERY)
  next_eval = loop.step + run_config.eval_every if run_config.eval_every else None
  loop.signals.install()

  if not offline:
    driver = Driver(loop.train_env)
    num_envs = driver.num_envs
    rng = np.random.default_rng(loop.host_seed + loop.step)

    def random_policy(obs):
      del obs
      loop.last_entries = None
      return np.stack([loop.act_space.sample(rng) for _ in range(num_envs)])
    train_policy = _Policy(loop, 'train', num_envs)

    def on_step(transition, worker):
      step = strip_log(transition)
      if loop.empty_entries:  # the policy's latent (V3 replay context); zeros for random actions
        acted = loop.last_entries
        step.update({key: acted[key][worker] if acted else empty
                     for key, empty in loop.empty_entries.items()})
      with loop.replay_lock:
        replay.add(step, worker)
      loop.step += 1
    driver.on_step(on_step)
    driver.on_episode(lambda episode, worker: loop.logger.episode(
        loop.step, episode['score'], episode['length'],
        **{k: v for k, v in episode.items() if k not in ('score', 'length')}))

  def ready_to_train():
    return (not offline and loop.step >= run_config.prefill
            and replay.starts(loop.window) >= max(1, run_config.train_starts))
  trainable = False

  while loop.step < run_config.steps:
    if not offline:
      driver.run(random_policy if loop.step < run_config.prefill else train_policy, steps=1)
    # One decision for all hosts (common/run/host_sync.py); with one host, the local one.
    stop, ready, clocks = loop.sync.agree(
        loop.step, loop.signals.received is not None, lambda: trainable or ready_to_train(),
        guard=guard_timer, report=report_timer, log=log_timer, save=save_timer)
    if ready and not trainable:
      trainable = True
      if loop.ratio.updates == 0 and loop.step > loop.ratio.start:
        loop.ratio.start = loop.step  # the ratio counts from here, without a burst for the wait
    if offline:
      loop.train_step(replay)
      loop.ratio.updates += 1
      loop.step = int(fractions.Fraction(loop.ratio.updates * loop.batch_steps)
                      / fractions.Fraction(run_config.train_ratio))
    elif trainable:
      due = loop.ratio.due(loop.step)
      for done in range(due):
        if loop.signals.received is not None and not loop.sync.multihost:
          # Stop between updates, not after a long burst (e.g. pretrain): the rest stay owed.
          # Over several hosts every host must run the same updates, so the burst finishes.
          loop.ratio.updates -= due - done
          stop = True
          break
        loop.train_step(replay)
    if clocks['guard']:
      loop.check_guard()
    if next_eval is not None and loop.step >= next_eval:
      summary['eval_scores'] = loop.evaluate(run_config.eval_episodes)
      next_eval = loop.step + run_config.eval_every
    if clocks['report']:
      loop.do_report(replay)
    if clocks['log']:
      loop.check_guard()
      loop.flush_metrics(replay)
    if stop or (loop.signals.received is not None and not loop.sync.multihost):
      loop.save(replay)
      name = (signal.Signals(loop.signals.received).name if loop.signals.received is not None
              else 'Stop signal on another host')
      print(f'{name}: saved checkpoint {loop.checkpointer.directory}/{loop.step}; run the '
            f'same command to resume.', file=loop.stream)
      summary['interrupted'] = True
      break
    if clocks['save']:
      loop.save(replay)
  else:
    loop.check_guard()
    loop.flush_metrics(replay)
    loop.save(replay)
  loop.stop_prefetch()   # before the replay it samples from closes
  replay.close()
  summary.update(step=loop.step, updates=loop.ratio.updates, replay_steps=len(replay))
  return summary


def config_lib_replay(config):
  replay_config = config.replay
  if not isinstance(replay_config, replay_lib.ReplayConfig):
    raise TypeError(f'config.replay: expected a common.replay.host.ReplayConfig, got '
                    f'{type(replay_config).__name__}.')
  return replay_config

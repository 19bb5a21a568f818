"""World Models pipeline (Ha & Schmidhuber, 2018): `python -m world_models_ha.main --env car_racing --stage all`.

Stages, each resumable (a finished stage is skipped, an interrupted one continues from its last
checkpoint), all writing into the run directory:
  collect     random-policy rollouts          -> rollouts/<id>.npz
  vae         train V on the frames           -> vae/ (checkpoints)
  encode      VAE posteriors of every frame   -> series.npz
  mdnrnn      train M on the encoded series   -> mdnrnn/
  controller  CMA-ES on C (real env or dream) -> controller/
  evaluate    C in the real environment       -> eval.json, scores.jsonl
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from common.run import config as config_lib
from common.run import devices
from common.run import host_sync
from common.run.checkpoint import Checkpointer
from common.run.logging import Logger
from world_models_ha import configs, controller, dream, evolve, mdnrnn, rollouts, vae

STAGES = ('collect', 'vae', 'encode', 'mdnrnn', 'controller', 'evaluate')


def kind_of(config) -> str:
  return 'car_racing' if config.env.name == 'car_racing' else 'doom'


def build_models(config):
  agent = config.agent
  vae_model = vae.VAE(z_size=agent.vae.z_size)
  rnn_model = mdnrnn.MDNRNN(z_size=agent.vae.z_size, hidden=agent.mdnrnn.hidden,
                            mixtures=agent.mdnrnn.mixtures, predict_done=agent.mdnrnn.predict_done,
                            restart_input=agent.mdnrnn.sequences == 'packed')
  num_inputs = controller.input_size(agent.vae.z_size, agent.mdnrnn.hidden,
                                     agent.controller.use_cell)
  kind = kind_of(config)
  template = controller.init_params(num_inputs, controller.action_dim(kind),
                                    bias=kind == 'car_racing')
  return vae_model, rnn_model, template


def _path(config, *parts):
  return os.path.join(config.run.logdir, *parts)


def _restore_params(directory, target, what):
  checkpointer = Checkpointer(directory, keep=1)
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f'{directory}: no {what} checkpoint; run the {what} stage first')
  state, meta = checkpointer.restore(target)
  checkpointer.close()
  return state, meta


# ------------------------------------------------------------------ collect


def collect(config, logger):
  directory = _path(config, 'rollouts')
  wanted = config.agent.collect.episodes
  done = {int(os.path.basename(p)[:-4]) for p in rollouts.list_episodes(directory)}
  missing = [i for i in range(wanted) if i not in done]
  if not missing:
    print(f'collect: {wanted} rollouts already in {directory}; skipped')
    return
  print(f'collect: {len(missing)} random rollouts -> {directory}')
  seeds = [config.run.seed * 1_000_003 + i for i in missing]
  policy = rollouts.RandomPolicy(config.env.name, config.run.envs, config.agent.collect.hold,
                                 config.run.seed + len(done))

  def on_episode(index, data):
    rollouts.save_episode(directory, missing[index], data)
    logger.episode(missing[index], data['reward'].sum(), len(data['reward']))

  with rollouts.EnvPool(config.env.name, config.run.envs, config.env.time_limit,
                        config.env.parallel) as pool:
    rollouts.run_episodes(pool, policy, np.zeros(len(missing)), seeds, record=True,
                          on_episode=on_episode)
  logger.write(len(missing), fps=False)


# ------------------------------------------------------------------ vae


def _episode_lengths(paths):
  """Frames (= actions) of each episode."""
  lengths = []
  for path in paths:
    with np.load(path) as data:
      lengths.append(len(data['reward']))
  return np.asarray(lengths)


def _host_rng(config, step):
  """The batch sampler's RNG at `step`: over several hosts each draws its own batches (the
  global batch is theirs side by side); process 0 draws what a one-host run draws."""
  host = [jax.process_index()] if jax.process_index() else []
  return np.random.default_rng([config.run.seed, step] + host)


def placement_for(config, batch_size: int):
  """Data parallel over `run.train_devices` (common/run/devices.py) for a stage's batch."""
  return devices.Placement(dataclasses.replace(config.run, batch_size=batch_size))


def _apply(optimizer, state, grads, key) -> dict:
  """The stage state {params, opt_state, key} after one optimizer step on `grads`."""
  updates, opt_state = optimizer.update(grads, state['opt_state'], state['params'])
  return {'params': optax.apply_updates(state['params'], updates), 'opt_state': opt_state,
          'key': key}


def vae_train_step(vae_model, optimizer, kl_tolerance: float):
  """`(state, images [B, H, W, C]) -> (state, metrics)`: one optimizer step on V's loss."""
  def train_step(state, images):
    key, loss_key = jax.random.split(state['key'])
    grads, metrics = jax.grad(
        lambda p: vae.loss_fn(vae_model, p, images, loss_key, kl_tolerance),
        has_aux=True)(state['params'])
    return _apply(optimizer, state, grads, key), metrics
  return train_step


def mdnrnn_train_step(rnn_model, optimizer, done_weight: float):
  """`(state, batch [B, T, ...], carry [B, ...]) -> (state, metrics, carry)`: one optimizer
  step on M's loss, the LSTM state carried on (packed sequences)."""
  def train_step(state, batch, carry):
    key, loss_key = jax.random.split(state['key'])
    grads, (metrics, carry) = jax.grad(
        lambda p: mdnrnn.loss_fn(rnn_model, p, batch, loss_key, done_weight, carry),
        has_aux=True)(state['params'])
    return _apply(optimizer, state, grads, key), metrics, carry
  return train_step


def train_vae(config, logger):
  cfg = config.agent.vae
  paths = rollouts.list_episodes(_path(config, 'rollouts'))
  if not paths:
    raise FileNotFoundError(f'{_path(config, "rollouts")}: no rollouts; run the collect stage first')
  frames = int(_episode_lengths(paths).sum())
  total_steps = max(1, cfg.epochs * frames // cfg.batch_size)
  vae_model, _, _ = build_models(config)
  optimizer = optax.adam(cfg.lr)
  key = jax.random.PRNGKey(config.run.seed)
  params = vae.init_params(vae_model, key)
  state = {'params': params, 'opt_state': optimizer.init(params), 'key': key}
  checkpointer = Checkpointer(_path(config, 'vae'), keep=config.run.keep_checkpoints)
  step = 0
  if checkpointer.latest_step() is not None:
    state, meta = checkpointer.restore(state)
    step = int(meta['step'])
  if step >= total_steps:
    print(f'vae: trained ({step} steps); skipped')
    return
  placement = placement_for(config, cfg.batch_size)
  state = placement.put_state(state)
  train_step = jax.jit(vae_train_step(vae_model, optimizer, cfg.kl_tolerance),
                       donate_argnums=0)
  print(f'vae: {frames} frames, {total_steps} steps of batch {cfg.batch_size} (from {step}), '
        f'{placement.describe()}')
  rng = _host_rng(config, step)
  while step < total_steps:
    chunk = rng.permutation(len(paths))[:cfg.chunk_episodes]
    images = np.concatenate([rollouts.load_episode(paths[i])['obs'] for i in chunk])
    order = rng.permutation(len(images))
    for begin in range(0, max(1, len(images) - cfg.batch_size + 1), cfg.batch_size):
      batch = images[np.resize(order[begin:begin + cfg.batch_size], cfg.batch_size)]
      state, metrics = train_step(state, placement.put_batch(batch))
      step += 1
      logger.add(metrics)
      if step % cfg.save_every == 0 or step == total_steps:
        checkpointer.save(step, state, {'step': step})
        logger.write(step)
      if step >= total_steps:
        break
  checkpointer.close()


def load_vae(config, source=None):
  vae_model, _, _ = build_models(config)
  params = vae.init_params(vae_model, jax.random.PRNGKey(0))
  optimizer = optax.adam(config.agent.vae.lr)
  target = {'params': params, 'opt_state': optimizer.init(params), 'key': jax.random.PRNGKey(0)}
  state, _ = _restore_params(os.path.join(source or config.run.logdir, 'vae'), target, 'vae')
  return vae_model, state['params']


# ------------------------------------------------------------------ encode


SERIES_LAYOUT = 2   # per episode T frames and T actions (earlier files: T + 1 frames)


def encode(config, logger):
  """The VAE posteriors of every frame: series.npz with `mean`, `logvar` [E, H, Z], `action`
  [E, H, A], `reward`, `done`, `mask` [E, H] (mask: the episode's steps; H its longest)."""
  del logger
  output = _path(config, 'series.npz')
  paths = rollouts.list_episodes(_path(config, 'rollouts'))
  if os.path.exists(output):
    with np.load(output) as data:
      layout = int(data['layout']) if 'layout' in data.files else 1
      if layout == SERIES_LAYOUT and len(data['mask']) == len(paths):
        print(f'encode: {output} is up to date; skipped')
        return
  vae_model, params = load_vae(config)
  encode_fn = jax.jit(lambda images: vae.encode(vae_model, params, images))
  lengths = _episode_lengths(paths)
  horizon, z_size = int(lengths.max()), config.agent.vae.z_size
  episodes = len(paths)
  action_dim = controller.action_dim(kind_of(config))
  series = {'mean': np.zeros((episodes, horizon, z_size), np.float32),
            'logvar': np.zeros((episodes, horizon, z_size), np.float32),
            'action': np.zeros((episodes, horizon, action_dim), np.float32),
            'reward': np.zeros((episodes, horizon), np.float32),
            'done': np.zeros((episodes, horizon), bool),
            'mask': np.zeros((episodes, horizon), bool),
            'layout': np.int32(SERIES_LAYOUT)}
  block = 256  # fixed batch so that one program serves every episode
  for index, path in enumerate(paths):
    data = rollouts.load_episode(path)
    obs, length = data['obs'], len(data['obs'])
    padded = np.concatenate([obs, np.zeros((-length % block,) + obs.shape[1:], obs.dtype)])
    parts = [encode_fn(padded[i:i + block]) for i in range(0, len(padded), block)]
    series['mean'][index, :length] = np.concatenate([p[0] for p in parts])[:length]
    series['logvar'][index, :length] = np.concatenate([p[1] for p in parts])[:length]
    for key in ('action', 'reward', 'done'):
      series[key][index, :length] = data[key]
    series['mask'][index, :length] = True
  temporary = output[:-4] + '.tmp.npz'
  np.savez(temporary, **series)
  os.replace(temporary, output)
  print(f'encode: {episodes} episodes -> {output}')


# ------------------------------------------------------------------ mdnrnn


def rnn_optimizer(cfg):
  """Adam with each gradient element clipped to +-grad_clip and lr decayed per step towards
  min_lr, as the reference's rnn.py / doomrnn.py (tf.clip_by_value, decay_rate)."""
  schedule = lambda step: (cfg.lr - cfg.min_lr) * cfg.lr_decay ** step + cfg.min_lr
  return optax.chain(optax.clip(cfg.grad_clip), optax.adam(schedule))


def _rnn_state(config, rnn_model, key):
  params = mdnrnn.init_params(rnn_model, key, controller.action_dim(kind_of(config)))
  return {'params': params, 'opt_state': rnn_optimizer(config.agent.mdnrnn).init(params),
          'key': key}


def sample_windows(series, rng, batch_size, length):
  """Random windows of `length` transitions inside single episodes (the CarRacing reference),
  each from a zero state: `mean`, `logvar` [B, length + 1, Z], `action`, `done`, `mask`
  [B, length]; a transition is valid where its next frame exists (padded past the end)."""
  transitions = series['mask'].sum(1) - 1        # frames that have a next frame
  episodes = rng.choice(np.flatnonzero(transitions > 0), batch_size)
  starts = (rng.uniform(size=batch_size) *
            np.maximum(transitions[episodes] - length + 1, 1)).astype(int)
  steps = starts[:, None] + np.arange(length + 1)[None]
  horizon = series['mask'].shape[1]
  take = lambda x: x[episodes[:, None], np.minimum(steps, horizon - 1)]
  batch = {key: take(series[key]) for key in ('mean', 'logvar')}
  for key in ('action', 'done'):
    batch[key] = take(series[key])[:, :-1]
  batch['mask'] = take(series['mask'])[:, 1:] & (steps[:, 1:] < horizon)
  return batch


def packed_chunks(series, rng, batch_size, length):
  """One epoch of the Doom reference's training data (rnn_train.py create_batches).

  The episodes, shuffled, are joined into one stream of frames with a restart flag on each
  episode's first; the stream is cut to a multiple of batch_size x length, laid out as
  batch_size rows and split into chunks of `length` frames. Returns a list of batches for
  `mdnrnn.loss_fn`, each with `length - 1` transitions: `mean`, `logvar` [B, length, Z],
  `action` [B, length - 1, A], `restart` [B, length - 1] (input flags), `done` [B, length - 1]
  (the next frame's flag) and `mask` (all true). Chunk i + 1 continues chunk i's rows.
  """
  order = rng.permutation(len(series['mask']))
  lengths = series['mask'].sum(1)
  stream = {key: np.concatenate([series[key][e, :lengths[e]] for e in order])
            for key in ('mean', 'logvar', 'action')}
  restart = np.zeros(int(lengths.sum()), np.float32)
  restart[np.concatenate([[0], np.cumsum(lengths[order])[:-1]])] = 1.0
  stream['restart'] = restart
  count = len(restart) // (batch_size * length)
  chunks = []
  rows = {key: value[:count * batch_size * length].reshape(
      (batch_size, count * length) + value.shape[1:]) for key, value in stream.items()}
  for i in range(count):
    chunk = {key: value[:, i * length:(i + 1) * length] for key, value in rows.items()}
    chunks.append({'mean': chunk['mean'], 'logvar': chunk['logvar'],
                   'action': chunk['action'][:, :-1], 'restart': chunk['restart'][:, :-1],
                   'done': chunk['restart'][:, 1:] > 0.5,
                   'mask': np.ones((batch_size, length - 1), bool)})
  return chunks


def train_mdnrnn(config, logger):
  cfg = config.agent.mdnrnn
  output = _path(config, 'series.npz')
  if not os.path.exists(output):
    raise FileNotFoundError(f'{output}: missing; run the encode stage first')
  _, rnn_model, _ = build_models(config)
  state = _rnn_state(config, rnn_model, jax.random.PRNGKey(config.run.seed))
  checkpointer = Checkpointer(_path(config, 'mdnrnn'), keep=config.run.keep_checkpoints)
  step = 0
  if checkpointer.latest_step() is not None:
    state, meta = checkpointer.restore(state)
    step = int(meta['step'])
  if step >= cfg.steps:
    print(f'mdnrnn: trained ({step} steps); skipped')
    return
  with np.load(output) as data:
    series = {key: data[key] for key in data.files}
  placement = placement_for(config, cfg.batch_size)
  state = placement.put_state(state)
  train_step = jax.jit(mdnrnn_train_step(rnn_model, rnn_optimizer(cfg), cfg.done_weight),
                       donate_argnums=0)
  print(f'mdnrnn: {cfg.steps} steps of {cfg.batch_size} x {cfg.seq_len} {cfg.sequences} '
        f'(from {step}), {placement.describe()}')
  rng = _host_rng(config, step)
  # 'packed': epochs of consecutive chunks, the state carried along each row (a resumed run
  # starts a new epoch); 'windows': independent windows from a zero state.
  chunks = []
  while step < cfg.steps:
    if cfg.sequences == 'packed':
      if not chunks:
        chunks = packed_chunks(series, rng, cfg.batch_size, cfg.seq_len)
        if not chunks:
          raise ValueError(f'mdnrnn: packed training needs at least batch_size x seq_len = '
                           f'{cfg.batch_size * cfg.seq_len} frames, the rollouts hold '
                           f'{int(series["mask"].sum())}; collect more episodes or lower '
                           'agent.mdnrnn.batch_size / seq_len.')
        carry = placement.put_batch(mdnrnn.initial_carry(rnn_model, cfg.batch_size))
      batch = chunks.pop(0)
    else:
      batch = sample_windows(series, rng, cfg.batch_size, cfg.seq_len)
      carry = placement.put_batch(mdnrnn.initial_carry(rnn_model, cfg.batch_size))
    state, metrics, carry = train_step(state, placement.put_batch(batch), carry)
    step += 1
    logger.add(metrics)
    if step % cfg.save_every == 0 or step == cfg.steps:
      checkpointer.save(step, state, {'step': step})
      logger.write(step)
  checkpointer.close()


def load_mdnrnn(config, source=None):
  _, rnn_model, _ = build_models(config)
  target = _rnn_state(config, rnn_model, jax.random.PRNGKey(0))
  state, _ = _restore_params(os.path.join(source or config.run.logdir, 'mdnrnn'), target,
                             'mdnrnn')
  return rnn_model, state['params']


# ------------------------------------------------------------------ controller


class ControllerPolicy:
  """Host-side batched policy for `rollouts.run_episodes`: V encodes the frame (z sampled), C acts
  on [z, h], M advances h with (z, a). Candidates' parameters are stacked on a leading axis."""

  def __init__(self, config, vae_model, vae_params, rnn_model, rnn_params, num_slots, seed):
    kind, use_cell = kind_of(config), config.agent.controller.use_cell
    self.carry = mdnrnn.initial_carry(rnn_model, num_slots)
    self.key = jax.random.PRNGKey(seed)
    self.candidates = None

    def step(candidates, params_index, carry, frames, is_first, key):
      carry = jax.tree.map(lambda x: jnp.where(is_first[:, None], 0.0, x), carry)
      mean, logvar = vae.encode(vae_model, vae_params, frames)
      z = vae.sample_z(mean, logvar, key)
      chosen = jax.tree.map(lambda x: x[params_index], candidates)
      inputs = controller.features(z, carry, use_cell)
      action = jax.vmap(lambda p, x: controller.act(p, x[None], kind)[0])(chosen, inputs)
      carry, _ = mdnrnn.step(rnn_model, rnn_params, carry, z, action, is_first)
      return action, carry

    self._step = jax.jit(step)

  def __call__(self, frames, is_first, params_index):
    self.key, key = jax.random.split(self.key)
    action, self.carry = self._step(self.candidates, params_index, self.carry, frames,
                                    is_first, key)
    return np.asarray(action)


def real_returns(pool, policy, candidates, episodes_each, rng, only_first=False):
  """Mean real return of each candidate [P] over `episodes_each` episodes with random seeds
  (with `only_first`, just candidate 0's: [1]; the stack keeps one compiled policy shape)."""
  population = 1 if only_first else jax.tree.leaves(candidates)[0].shape[0]
  policy.candidates = candidates
  index = np.repeat(np.arange(population), episodes_each)
  returns, lengths = rollouts.run_episodes(pool, policy, index,
                                           rng.integers(0, 2**31 - 1, len(index)))
  return returns.reshape(population, episodes_each).mean(1), returns, lengths


def train_controller(config, logger):
  cfg = config.agent.evolve
  vae_model, vae_params = load_vae(config)
  rnn_model, rnn_params = load_mdnrnn(config)
  _, _, template = build_models(config)
  es = evolve.CMAES(template, population=cfg.population, sigma=cfg.sigma,
                    weight_decay=cfg.weight_decay)
  key = jax.random.PRNGKey(config.run.seed)
  state = {'es': es.init(key), 'best': template, 'best_score': jnp.asarray(-jnp.inf),
           'key': key}
  checkpointer = Checkpointer(_path(config, 'controller'), keep=config.run.keep_checkpoints)
  generation = 0
  if checkpointer.latest_step() is not None:
    state, meta = checkpointer.restore(state)
    generation = int(meta['step'])
  if generation >= cfg.generations:
    print(f'controller: evolved ({generation} generations); skipped')
    return
  print(f'controller: CMA-ES on {es.num_params} parameters in the {cfg.where}, '
        f'generations {generation}..{cfg.generations}')
  kind, use_cell = kind_of(config), config.agent.controller.use_cell
  rng = np.random.default_rng([config.run.seed, generation])
  pool = policy = None
  if cfg.where == 'dream':
    with np.load(_path(config, 'series.npz')) as data:
      initial_mean = jnp.asarray(data['mean'][:, 0])
      initial_logvar = jnp.asarray(data['logvar'][:, 0])
    dream_fn = jax.jit(lambda candidates, key, rollouts_each: dream.evaluate_population(
        rnn_model, rnn_params, candidates, initial_mean, initial_logvar, key,
        rollouts=rollouts_each, kind=kind, use_cell=use_cell, temperature=cfg.temperature,
        max_steps=cfg.dream_steps)[0], static_argnums=2)
    def evaluate(candidates, episodes_each, key):
      return np.asarray(dream_fn(candidates, key, episodes_each))
    def select(mean, key):
      # The mean in every slot of the compiled program: population x rollouts dream episodes
      # (64 x 16 = the reference's 1,024 evaluations of the mean).
      tiled = jax.tree.map(lambda x: jnp.repeat(x[None], cfg.population, 0), mean)
      return float(evaluate(tiled, cfg.rollouts, key).mean())
  else:
    pool = rollouts.EnvPool(config.env.name, config.run.envs, config.env.time_limit,
                            config.env.parallel)
    policy = ControllerPolicy(config, vae_model, vae_params, rnn_model, rnn_params,
                              config.run.envs, config.run.seed + generation)
    def evaluate(candidates, episodes_each, key):
      del key
      return real_returns(pool, policy, candidates, episodes_each, rng)[0]
    def select(mean, key):
      del key
      stacked = jax.tree.map(lambda x: jnp.repeat(x[None], cfg.population, 0), mean)
      return float(real_returns(pool, policy, stacked, cfg.select_episodes, rng,
                                only_first=True)[0][0])
  try:
    while generation < cfg.generations:
      start = time.time()
      key, ask_key, eval_key, tell_key, select_key = jax.random.split(state['key'], 5)
      candidates, es_state = es.ask(ask_key, state['es'])
      returns = evaluate(candidates, cfg.rollouts, eval_key)
      es_state, metrics = es.tell(tell_key, es_state, candidates, jnp.asarray(returns))
      state = dict(state, es=es_state, key=key)
      generation += 1
      logger.add(metrics)
      logger.scalar('evolve/seconds_per_generation', time.time() - start)
      if generation % cfg.select_every == 0 or generation == cfg.generations:
        mean = es.mean(es_state)
        score = select(mean, select_key)
        logger.scalar('evolve/mean_score', score)
        if score > float(state['best_score']):
          state = dict(state, best=mean, best_score=jnp.asarray(score))
        checkpointer.save(generation, state, {'step': generation})
        logger.write(generation)
  finally:
    if pool is not None:
      pool.close()
    checkpointer.close()


def load_controller(config, source=None):
  _, _, template = build_models(config)
  es = evolve.CMAES(template, population=config.agent.evolve.population,
                    sigma=config.agent.evolve.sigma)
  key = jax.random.PRNGKey(0)
  target = {'es': es.init(key), 'best': template, 'best_score': jnp.asarray(-jnp.inf),
            'key': key}
  state, _ = _restore_params(os.path.join(source or config.run.logdir, 'controller'), target,
                             'controller')
  return state['best'], float(state['best_score'])


# ------------------------------------------------------------------ evaluate


def evaluate(config, logger):
  output = _path(config, 'eval.json')
  if os.path.exists(output) and not config.run.eval_only:
    print(f'evaluate: {output} exists; skipped')
    return
  source = config.run.from_checkpoint or None
  vae_model, vae_params = load_vae(config, source)
  rnn_model, rnn_params = load_mdnrnn(config, source)
  best, _ = load_controller(config, source)
  episodes = config.run.eval_episodes
  policy = ControllerPolicy(config, vae_model, vae_params, rnn_model, rnn_params,
                            config.run.eval_envs, config.run.seed + 7)
  rng = np.random.default_rng([config.run.seed, 12345])
  with rollouts.EnvPool(config.env.name, config.run.eval_envs, config.env.time_limit,
                        config.env.parallel) as pool:
    _, returns, lengths = real_returns(pool, policy, jax.tree.map(lambda x: x[None], best),
                                       episodes, rng)
  for index, (score, length) in enumerate(zip(returns, lengths)):
    logger.episode(index, score, length)
  result = {'env': config.env.name, 'episodes': int(episodes), 'mean': float(returns.mean()),
            'std': float(returns.std()), 'returns': returns.tolist(),
            'lengths': lengths.tolist()}
  with open(output, 'w') as file:
    json.dump(result, file, indent=1)
  print(f'evaluate: {episodes} episodes, return {result["mean"]:.1f} +- {result["std"]:.1f}')


# The stages with a gradient step, which several hosts train data parallel.
MULTIHOST_STAGES = ('vae', 'mdnrnn')
STAGE_FUNCTIONS = {'collect': collect, 'vae': train_vae, 'encode': encode,
                   'mdnrnn': train_mdnrnn, 'controller': train_controller,
                   'evaluate': evaluate}


def main(argv=None):
  argv = sys.argv[1:] if argv is None else list(argv)
  stage_parser = argparse.ArgumentParser(add_help=False)
  stage_parser.add_argument('--stage', default='all')
  args, rest = stage_parser.parse_known_args(argv)
  if args.stage not in STAGES + ('all',):
    print(f'world_models_ha.main: error: --stage {args.stage!r} is not one of '
          f'{", ".join(STAGES + ("all",))}', file=sys.stderr)
    raise SystemExit(2)
  config = config_lib.parse(rest, configs.PRESETS, prog='world_models_ha.main')
  stages = STAGES if args.stage == 'all' else (args.stage,)
  if config.run.eval_only:
    stages = ('evaluate',)
  try:
    if devices.configured_processes(config.run) > 1 and set(stages) - set(MULTIHOST_STAGES):
      raise ValueError(f'several hosts (run.processes) train the {" and ".join(MULTIHOST_STAGES)} '
                       'stages only (--stage vae, --stage mdnrnn); run the others on one host.')
    devices.initialize_distributed(config.run)
  except ValueError as error:
    print(f'world_models_ha.main: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  os.makedirs(config.run.logdir, exist_ok=True)
  if jax.process_index() == 0:
    config_lib.save(config, _path(config, 'config.yaml'))
  # The other hosts of a multi-host run log apart, as the shared train loop's do.
  logger = Logger(host_sync.host_dir(config.run.logdir), verbose=config.run.verbose)
  try:
    for stage in stages:
      STAGE_FUNCTIONS[stage](config, logger)
  finally:
    logger.close()


if __name__ == '__main__':
  main()

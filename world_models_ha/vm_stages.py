"""V and M: the gradient stages of World Models (Ha & Schmidhuber 2018, Sec. 2.1-2.2).

  vae     train V on the collected frames             -> vae/ (checkpoints)
  encode  V's posterior of every frame                -> series.npz
  mdnrnn  train M on the encoded series               -> mdnrnn/

Both train steps are data parallel over `run.train_devices` and, through `jax.distributed`,
over several hosts (each host draws its own batches; process 0 draws what one host draws).
"""
import dataclasses
import os

import jax
import numpy as np
import optax

from common.run import devices
from world_models_ha import controller, mdnrnn, models, rollouts, vae


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
  paths = rollouts.list_episodes(models.run_path(config, 'rollouts'))
  if not paths:
    raise FileNotFoundError(f'{models.run_path(config, "rollouts")}: no rollouts; run the collect stage first')
  frames = int(_episode_lengths(paths).sum())
  total_steps = max(1, cfg.epochs * frames // cfg.batch_size)
  vae_model, _, _ = models.build_models(config)
  optimizer = optax.adam(cfg.lr)
  key = jax.random.PRNGKey(config.run.seed)
  params = vae.init_params(vae_model, key)
  state = {'params': params, 'opt_state': optimizer.init(params), 'key': key}
  checkpointer, state, step = models.resume(config, 'vae', state)
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
  vae_model, _, _ = models.build_models(config)
  params = vae.init_params(vae_model, jax.random.PRNGKey(0))
  optimizer = optax.adam(config.agent.vae.lr)
  target = {'params': params, 'opt_state': optimizer.init(params), 'key': jax.random.PRNGKey(0)}
  state, _ = models.restore_params(os.path.join(source or config.run.logdir, 'vae'), target, 'vae')
  return vae_model, state['params']


SERIES_LAYOUT = 2   # per episode T frames and T actions (earlier files: T + 1 frames)


def encode(config, logger):
  """The VAE posteriors of every frame: series.npz with `mean`, `logvar` [E, H, Z], `action`
  [E, H, A], `reward`, `done`, `mask` [E, H] (mask: the episode's steps; H its longest)."""
  del logger
  output = models.run_path(config, 'series.npz')
  paths = rollouts.list_episodes(models.run_path(config, 'rollouts'))
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
  action_dim = controller.action_dim(models.kind_of(config))
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


def rnn_optimizer(cfg):
  """Adam with each gradient element clipped to +-grad_clip and lr decayed per step towards
  min_lr, as the reference's rnn.py / doomrnn.py (tf.clip_by_value, decay_rate)."""
  schedule = lambda step: (cfg.lr - cfg.min_lr) * cfg.lr_decay ** step + cfg.min_lr
  return optax.chain(optax.clip(cfg.grad_clip), optax.adam(schedule))


def _rnn_state(config, rnn_model, key):
  params = mdnrnn.init_params(rnn_model, key, controller.action_dim(models.kind_of(config)))
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
  output = models.run_path(config, 'series.npz')
  if not os.path.exists(output):
    raise FileNotFoundError(f'{output}: missing; run the encode stage first')
  _, rnn_model, _ = models.build_models(config)
  state = _rnn_state(config, rnn_model, jax.random.PRNGKey(config.run.seed))
  checkpointer, state, step = models.resume(config, 'mdnrnn', state)
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
  _, rnn_model, _ = models.build_models(config)
  target = _rnn_state(config, rnn_model, jax.random.PRNGKey(0))
  state, _ = models.restore_params(os.path.join(source or config.run.logdir, 'mdnrnn'), target,
                             'mdnrnn')
  return rnn_model, state['params']

"""Bug-or-budget checks for a World Models DoomTakeCover run: does the dream match the game?

  python -m experiments.diagnose_world_models --logdir RUN [--episodes 16] [--dream_episodes 64]

On a run directory with every stage done (rollouts, V, M, C), about a minute on a CPU:
  * survival: mean episode length of known policies (always stay, random actions held 1..10
    steps as the collection policy, the evolved controller) in the dream at tau 1.0 and 1.15
    and in the real game. A dream that lets a known-bad policy survive much longer than the
    game (`dream_over_real` well above 1 for `stay` or `random`) is a model failure: the
    controller will exploit it, whatever the budget;
  * the done head: its recall at true deaths and its false-positive rate elsewhere, by steps
    since reset (beyond 500 especially, where short training windows never reached), on the
    encoded rollouts with teacher forcing;
  * V: the reconstruction error of the frames just before deaths against other frames.
"""
import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from common.run import config as config_lib
from world_models_ha import c_stages, configs, dream, mdnrnn, models, rollouts, vae, vm_stages

BUCKETS = (0, 100, 200, 300, 500, 10 ** 9)   # steps since reset
DREAM_OVER_REAL_LIMIT = 1.5                  # a known-bad policy surviving longer is a failure


def random_hold_actions(rng, episodes, steps, hold):
  """The collection policy's actions: left, stay or right, each held 1..hold steps [N, T, 1]."""
  out = np.zeros((episodes, steps, 1), np.float32)
  for n in range(episodes):
    t = 0
    while t < steps:
      length = int(rng.integers(1, hold + 1))
      out[n, t:t + length] = float(rng.integers(-1, 2))
      t += length
  return out


class _Stay:
  def __call__(self, frames, is_first, params_index):
    del is_first, params_index
    return np.zeros((len(frames), 1), np.float32)


def done_head_by_time(model, params, series, max_episodes=200, batch=50):
  """Recall at deaths and false positives elsewhere of the done head, by steps since reset.

  M reads each episode from a zero state with the restart flag on its first step (teacher
  forcing on V's means), in batches of the padded series: one compiled program.
  """
  mask = series['mask'][:max_episodes].astype(bool)
  lengths = mask.sum(1)
  unroll = jax.jit(lambda z, a, r: mdnrnn.unroll(model, params, z, a, restart=r)[0].done_logit)
  logits = []
  for first in range(0, len(mask), batch):
    z = series['mean'][first:first + batch]
    a = series['action'][first:first + batch]
    pad = batch - len(z)   # the last batch padded to the same shape
    z, a = (np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]) for x in (z, a))
    restart = np.zeros(z.shape[:2], np.float32)
    restart[:, 0] = 1.0
    logits.append(np.asarray(unroll(jnp.asarray(z), jnp.asarray(a), jnp.asarray(restart)))
                  [:batch - pad])
  logits = np.concatenate(logits)
  times = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
  deaths = np.zeros_like(mask)   # the game ended after an episode's last action
  ended = series['done'][np.arange(len(mask)), lengths - 1].astype(bool)
  deaths[np.arange(len(mask)), lengths - 1] = ended
  result = []
  for low, high in zip(BUCKETS[:-1], BUCKETS[1:]):
    inside = mask & (times >= low) & (times < high)
    positive, negative = inside & deaths, inside & ~deaths
    result.append({'steps': f'{low}-{high if high < 10 ** 9 else ""}',
                   'deaths': int(positive.sum()),
                   'recall': float((logits[positive] > 0).mean()) if positive.any() else None,
                   'false_positive_rate': (float((logits[negative] > 0).mean())
                                           if negative.any() else None)})
  return result


def reconstruction_near_deaths(vae_model, vae_params, paths, before=10, max_episodes=100,
                               seed=0, batch=100):
  """Mean squared error per pixel of V's reconstructions: the last `before` frames before each
  death against as many frames drawn from the rest of the same episodes."""
  rng = np.random.default_rng(seed)
  frames = {'before_death': [], 'other': []}
  for path in paths[:max_episodes]:
    episode = rollouts.load_episode(path)
    obs = episode['obs']
    near = np.zeros(len(obs), bool)
    if episode['done'][-1]:
      near[-before:] = True
    frames['before_death'].append(obs[near])
    others = np.flatnonzero(~near)
    frames['other'].append(obs[rng.choice(others, min(before, len(others)), replace=False)])
  encode_decode = jax.jit(lambda x: jnp.square(
      vae.decode(vae_model, vae_params, vae.encode(vae_model, vae_params, x)[0])
      - vae.to_float(x)).mean((1, 2, 3)))
  result = {}
  for key, chunks in frames.items():
    images = np.concatenate(chunks) if chunks else np.zeros((0,) + rollouts.FRAME_SHAPE, np.uint8)
    errors = []
    for first in range(0, len(images), batch):   # fixed-size batches: one compiled program
      part = images[first:first + batch]
      padded = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], part.dtype)])
      errors.append(np.asarray(encode_decode(jnp.asarray(padded)))[:len(part)])
    result[key] = float(np.concatenate(errors).mean()) if errors else None
  return result


def diagnose(logdir, episodes=16, dream_episodes=64, temperatures=(1.0, 1.15), seed=0):
  config = config_lib.load(os.path.join(logdir, 'config.yaml'), configs.Config)
  if models.kind_of(config) != 'doom':
    raise ValueError('diagnose_world_models: the dream checks need a DoomTakeCover run.')
  vae_model, vae_params = vm_stages.load_vae(config)
  rnn_model, rnn_params = vm_stages.load_mdnrnn(config)
  best, _ = c_stages.load_controller(config)
  with np.load(os.path.join(logdir, 'series.npz')) as data:
    series = {key: data[key] for key in data.files}
  max_steps = config.agent.evolve.dream_steps
  use_cell = config.agent.controller.use_cell
  rng = np.random.default_rng(seed)
  key = jax.random.PRNGKey(seed)
  pick = rng.integers(0, len(series['mean']), dream_episodes)
  initial = series['mean'][pick, 0] + np.exp(series['logvar'][pick, 0] / 2) * rng.normal(
      size=series['mean'][pick, 0].shape)
  initial = jnp.asarray(initial, jnp.float32)
  hold = config.agent.collect.hold
  stay_params = jax.tree.map(jnp.zeros_like, best)   # tanh(0) = 0: stay
  tile = lambda params: jax.tree.map(lambda x: jnp.repeat(x[None], dream_episodes, 0), params)
  random_actions = jnp.asarray(random_hold_actions(rng, dream_episodes, max_steps, hold))
  policies = {'stay': (tile(stay_params), None),          # (controller, fixed actions)
              'random': (tile(stay_params), random_actions),
              'evolved': (tile(best), None)}
  # Two compiled programs in all: controller or fixed actions (tau is traced).
  run = jax.jit(functools.partial(dream.rollout, rnn_model, kind='doom', use_cell=use_cell,
                                  max_steps=max_steps))
  survival = {}
  for name, (controller_params, actions) in policies.items():
    survival[name] = {}
    for tau in temperatures:
      key, run_key = jax.random.split(key)
      _, lengths = run(rnn_params, controller_params, initial, run_key,
                       temperature=jnp.float32(tau), actions=actions)
      survival[name][f'dream_tau_{tau}'] = float(np.mean(np.asarray(lengths)))
  real_policies = {'stay': _Stay(),
                   'random': rollouts.RandomPolicy(config.env.name, config.run.eval_envs, hold,
                                                   seed),
                   'evolved': c_stages.ControllerPolicy(config, vae_model, vae_params, rnn_model,
                                                       rnn_params, config.run.eval_envs, seed)}
  real_policies['evolved'].candidates = jax.tree.map(lambda x: x[None], best)
  with rollouts.EnvPool(config.env.name, config.run.eval_envs, config.env.time_limit,
                        config.env.parallel) as pool:
    for name, policy in real_policies.items():
      _, lengths = rollouts.run_episodes(pool, policy, np.zeros(episodes, int),
                                         rng.integers(0, 2 ** 31 - 1, episodes))
      survival[name]['real'] = float(lengths.mean())
  failures = []
  for name in ('stay', 'random'):
    for tau in temperatures:
      ratio = survival[name][f'dream_tau_{tau}'] / max(survival[name]['real'], 1.0)
      survival[name][f'dream_over_real_tau_{tau}'] = ratio
      if ratio > DREAM_OVER_REAL_LIMIT:
        failures.append(f'{name} survives {ratio:.1f}x longer in the dream at tau {tau} than '
                        'in the game')
  done = done_head_by_time(rnn_model, rnn_params, series) if rnn_model.predict_done else None
  recon = reconstruction_near_deaths(
      vae_model, vae_params, rollouts.list_episodes(os.path.join(logdir, 'rollouts')))
  verdict = ('model failure: ' + '; '.join(failures) + ' (the controller will exploit the '
             'dream)') if failures else 'the dream does not favour known-bad policies'
  return {'survival': survival, 'done_head': done, 'reconstruction_mse': recon,
          'verdict': verdict}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.diagnose_world_models')
  parser.add_argument('--logdir', required=True)
  parser.add_argument('--episodes', type=int, default=16, help='real episodes per policy')
  parser.add_argument('--dream_episodes', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if not os.path.isfile(os.path.join(args.logdir, 'config.yaml')):
    parser.error(f'--logdir: {args.logdir} has no config.yaml; pass a World Models run directory')
  result = diagnose(args.logdir, args.episodes, args.dream_episodes, seed=args.seed)
  print(json.dumps(result), flush=True)
  print(result['verdict'], file=sys.stderr)
  return result


if __name__ == '__main__':
  main(sys.argv[1:])

"""Dreamer 4 speed: each stage's train step and the world model's interactive inference.

    python -m experiments.bench_dreamer4 [--sizes debug small] [--repeats 5]

Interactive inference is what a player of the world model waits for: one frame is K = 4
shortcut passes plus one context pass, each reading the key-value cache (`Dynamics.step`).
Frames per second are measured for one stream (batch 1, the paper's real-time setting) and
for 16; the train steps at each stage's batch. Inputs are random frames of MinAtar's 10 x 10 x 4
shape (speed does not depend on the values). Prints a Markdown table; `--json` also writes it.
"""
import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from common.run import config as config_lib
from dreamer4 import configs, stages, world_model

FRAME = (10, 10, 4)


def _config(size):
  return config_lib.parse(['--size', size, '--set', 'run.offline_replay=unused'],
                          configs.PRESETS, prog='bench_dreamer4')


def _batch(rng, batch, length, actions):
  return {'frames': rng.random((batch, length) + FRAME, np.float32),
          'action': rng.integers(0, actions, (batch, length)).astype(np.int32),
          'reward': rng.random((batch, length), np.float32),
          'is_terminal': np.zeros((batch, length), bool),
          'is_first': np.zeros((batch, length), bool),
          'episode': np.zeros((batch, length), np.int64),
          'has_action': np.ones((batch, length), bool)}


def _time(fn, repeats):
  """(compile + first call s, median s of `repeats` later calls)."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


def inference_fps(models, params, batch, frames, repeats):
  """Frames per second of generation with acting, one frame per step, for `batch` streams."""
  generator = models.generator()
  agent = models.config.agent
  channels = agent.tokenizer.latents * agent.tokenizer.bottleneck // models.spatial

  def play(key):
    z = jnp.zeros((batch, 1, models.spatial, channels))
    action = jnp.zeros((batch, 1), jnp.int32)
    rollout = generator.rollout(params['dynamics'], params['heads'], key, z, action,
                                action.astype(bool), action, frames)
    return rollout['reward']

  play = jax.jit(play)
  key = jax.random.PRNGKey(0)
  first, seconds = _time(lambda: play(key), repeats)
  return batch * frames / seconds, first


def bench(size, repeats):
  config = _config(size)
  models = stages.Models(config, FRAME)
  params = models.init(jax.random.PRNGKey(0))
  agent, rng = config.agent, np.random.default_rng(0)
  rows = []
  tok, dyn = agent.tokenizer, agent.dynamics
  key = jax.random.PRNGKey(1)
  tokenizer_step = jax.jit(lambda p, b: jax.grad(lambda q: world_model.tokenizer_loss(
      models.tokenizer, q, b, key, tok.max_mask)[0]['tokenizer_mse'])(p))
  batch = _batch(rng, tok.batch, tok.length, models.actions)
  rows.append(('tokenizer', f'{tok.batch} x {tok.length}',
               *_time(lambda: tokenizer_step(params['tokenizer'], batch), repeats)))
  forward = stages._dynamics_loss(models, params['tokenizer'], dyn.k_max)   # pylint: disable=protected-access
  dynamics_step = jax.jit(lambda p, b: jax.grad(lambda q: forward(q, b, key)[0])(p))
  batch = _batch(rng, dyn.batch, dyn.length, models.actions)
  rows.append(('dynamics (shortcut forcing)', f'{dyn.batch} x {dyn.length}',
               *_time(lambda: dynamics_step(params['dynamics'], batch), repeats)))
  generator = models.generator()

  def imagine(p, b):
    z = world_model.encode(models.tokenizer, p['tokenizer'], b['frames'], b['episode'],
                           models.spatial)
    action, known = world_model.action_inputs(b)
    return generator.rollout(p['dynamics'], p['heads'], key, z, action, known, b['episode'],
                             agent.agent.horizon)['reward']

  imagine = jax.jit(imagine)
  batch = _batch(rng, agent.agent.batch, agent.agent.context, models.actions)
  rows.append(('imagination rollout', f'{agent.agent.batch} x ({agent.agent.context} + '
               f'{agent.agent.horizon})', *_time(lambda: imagine(params, batch), repeats)))
  fps = {b: inference_fps(models, params, b, 32, repeats) for b in (1, 16)}
  return rows, fps


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', nargs='+', default=['debug', 'small'])
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--json', default='')
  args = parser.parse_args(argv)
  results = {}
  print(f'device: {jax.devices()[0].device_kind}, jax {jax.__version__}')
  print('| size | what | batch | compile + first (s) | per call (s) |')
  print('|---|---|---|---:|---:|')
  for size in args.sizes:
    rows, fps = bench(size, args.repeats)
    for name, batch, first, seconds in rows:
      print(f'| {size} | {name} | {batch} | {first:.1f} | {seconds:.3f} |')
    for streams, (rate, first) in fps.items():
      print(f'| {size} | interactive inference, {streams} stream(s) | {streams} x 32 frames | '
            f'{first:.1f} | **{rate:.1f} frames/s** |')
    results[size] = {'steps': rows, 'fps': {str(k): v[0] for k, v in fps.items()}}
  if args.json:
    with open(args.json, 'w') as file:
      json.dump(results, file, indent=1)


if __name__ == '__main__':
  main()

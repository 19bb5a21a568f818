"""Dreamer 4's agent in the real environment: interactive inference over sliding windows.

Every step, the tokenizer encodes the newest frame from a window of the last frames (it is
causal in time), the latents join the dynamics model's key-value cache as context (corrupted
to the context signal level, as in imagination; a ring of a training window's frames less
one, so a frame reads what it read in training), and the agent token's output of the newest frame picks the action
from the policy head (sampled). `policy='bc'` uses the phase-2
behaviour-cloning head, `policy='agent'` the phase-3 head trained in imagination.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dreamer4 import data as data_lib
from dreamer4 import dynamics as dynamics_lib


def initial_windows(models, num, slots):
  """Empty windows; episode id -1 marks slots that no real frame reads."""
  tok_length = models.config.agent.tokenizer.length
  return {'frames': jnp.zeros((num, tok_length) + models.frame_shape),
          'frame_episode': -jnp.ones((num, tok_length), jnp.int32),
          'cache': dynamics_lib.empty_cache(models.dynamics, num, slots),
          'count': -jnp.ones((num,), jnp.int32),
          'position': jnp.zeros((num,), jnp.int32),
          'last_action': jnp.zeros((num,), jnp.int32)}


def _push(window, value):
  return jnp.concatenate([window[:, 1:], value[:, None].astype(window.dtype)], 1)


def act(models, params, heads_params, windows, frames, is_first, key):
  """(windows, frames [N, H, W, C], is_first [N]) -> (action [N], windows)."""
  generator = models.generator()
  key_context, key_action = jax.random.split(key)
  count = windows['count'] + is_first.astype(jnp.int32)
  frame_windows = _push(windows['frames'], frames)
  frame_episode = _push(windows['frame_episode'], count)
  z = models.tokenizer.apply({'params': params['tokenizer']}, frame_windows, None,
                             frame_episode, method=models.tokenizer.encode)
  z = dynamics_lib.pack(z, models.spatial)[:, -1]
  h, cache = generator.observe(params['dynamics'], key_context, windows['cache'], z,
                               windows['last_action'], ~is_first, count, windows['position'])
  action = jax.random.categorical(key_action, generator.policy_logits(heads_params, h))
  action = action.astype(jnp.int32)
  return action, {'frames': frame_windows, 'frame_episode': frame_episode, 'cache': cache,
                  'count': count, 'position': windows['position'] + 1, 'last_action': action}


def evaluate(config, models, params, heads_params, episodes: int, seed: int) -> list:
  """Returns of complete episodes in the real env: each of run.eval_envs envs plays
  ceil(episodes / eval_envs) of them (taking the first to finish would favour short ones)."""
  from common import envs   # pylint: disable=g-import-not-at-top
  from common.envs.jax_env import JaxBatch   # pylint: disable=g-import-not-at-top
  agent = config.agent
  num = config.run.eval_envs
  env = JaxBatch(envs.make_jax(config.env), num, seed)
  windows = initial_windows(models, num, models.generator().slots)
  step = jax.jit(functools.partial(act, models))
  key = jax.random.PRNGKey(seed)
  per_env = -(-episodes // num)
  scores, totals, done = [], np.zeros(num), np.zeros(num, int)
  obs = env.step(np.zeros(num, np.int32))
  try:
    while done.min() < per_env:
      key, step_key = jax.random.split(key)
      frames = data_lib.to_frames(obs, config.env.name)
      action, windows = step(params, heads_params, windows, frames, obs['is_first'], step_key)
      totals = np.where(obs['is_first'], 0.0, totals + obs['reward'])
      finished = obs['is_last'] & (done < per_env)
      scores.extend(totals[finished].tolist())
      done += obs['is_last']
      obs = env.step(np.asarray(action))
  finally:
    env.close()
  return scores

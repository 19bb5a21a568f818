"""Rollouts inside the MDN-RNN's "dream" (World Models, Sec. 4.3-4.4, DoomTakeCover).

The controller acts on [z, h] (or [z, c, h]); the MDN-RNN samples the next z at temperature tau
and predicts whether the episode ends (done logit > 0, as the reference's dream environment
does). The reward is the game's: +1 for every step survived. Episodes start from the encoded
first frames of real rollouts (with the restart flag set on the first step, for an MDN-RNN that
reads it) and last at most `max_steps` (2,100 in the reference).

All candidates and rollouts of a generation run as one batch: the controller is `jax.vmap`ped
over per-rollout parameters and the loop stops once every rollout has ended.
"""
from typing import Any

import chex
import jax
import jax.numpy as jnp

from world_models_ha import controller, mdnrnn


def rollout(model: mdnrnn.MDNRNN, rnn_params, controller_params, initial_z, key, *,
            kind: str, use_cell: bool, temperature: float, max_steps: int, actions=None):
  """Dream episodes for a batch of controllers.

  controller_params: pytree with leading [N]; initial_z [N, Z]. With `actions` [N, max_steps, A]
  (a fixed action sequence per episode, as the diagnostics' random policy), the controller is
  not used.
  Returns (returns [N], lengths [N] int32): steps survived before the predicted end.
  """
  chex.assert_rank(initial_z, 2)
  if not model.predict_done:
    raise ValueError('model: dreaming needs an MDN-RNN with predict_done=True '
                     '(the survival reward comes from the predicted episode end)')
  num = initial_z.shape[0]
  act = jax.vmap(lambda p, x: controller.act(p, x[None], kind)[0])

  def cond(loop):
    t, _, _, alive, _, _ = loop
    return (t < max_steps) & jnp.any(alive)

  def body(loop):
    t, z, carry, alive, length, key = loop
    key, sample_key = jax.random.split(key)
    if actions is None:
      action = act(controller_params, controller.features(z, carry, use_cell))
    else:
      action = actions[:, t]
    restart = jnp.full((num,), t == 0, jnp.float32)   # the first frame starts an episode
    carry, out = mdnrnn.step(model, rnn_params, carry, z, action, restart)
    z = mdnrnn.sample(out, sample_key, temperature)
    length = length + alive.astype(jnp.int32)
    alive = alive & (out.done_logit <= 0.0)
    return t + 1, z, carry, alive, length, key

  loop = (jnp.asarray(0), initial_z, mdnrnn.initial_carry(model, num), jnp.ones((num,), bool),
          jnp.zeros((num,), jnp.int32), key)
  _, _, _, _, length, _ = jax.lax.while_loop(cond, body, loop)
  return length.astype(jnp.float32), length


def evaluate_population(model: mdnrnn.MDNRNN, rnn_params, candidates: Any, initial_mean,
                        initial_logvar, key, *, rollouts: int, kind: str, use_cell: bool,
                        temperature: float, max_steps: int):
  """Mean dream return of each candidate over `rollouts` episodes.

  candidates: controller pytree with leading [P]; initial_mean / initial_logvar [D, Z] are the
  VAE posteriors of real first frames (each episode starts from a random one, z sampled).
  Returns (mean returns [P], returns [P, rollouts]).
  """
  chex.assert_rank([initial_mean, initial_logvar], 2)
  chex.assert_equal_shape([initial_mean, initial_logvar])
  initial_mean, initial_logvar = jnp.asarray(initial_mean), jnp.asarray(initial_logvar)
  population = jax.tree.leaves(candidates)[0].shape[0]
  pick_key, noise_key, rollout_key = jax.random.split(key, 3)
  index = jax.random.randint(pick_key, (population * rollouts,), 0, initial_mean.shape[0])
  mean, logvar = initial_mean[index], initial_logvar[index]
  initial_z = mean + jnp.exp(logvar / 2.0) * jax.random.normal(noise_key, mean.shape)
  tiled = jax.tree.map(lambda x: jnp.repeat(x, rollouts, axis=0), candidates)
  returns, _ = rollout(model, rnn_params, tiled, initial_z, rollout_key, kind=kind,
                       use_cell=use_cell, temperature=temperature, max_steps=max_steps)
  returns = returns.reshape(population, rollouts)
  return returns.mean(-1), returns

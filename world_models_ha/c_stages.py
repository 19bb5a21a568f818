"""C: World Models' controller stages (Ha & Schmidhuber 2018, Sec. 2.3 and 3-4).

  controller  CMA-ES on C's parameters, scored in the real env or in M's dream -> controller/
  evaluate    the best C in the real env                                     -> eval.json
"""
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from world_models_ha import controller, dream, evolve, mdnrnn, models, rollouts, vae
from world_models_ha.vm_stages import load_mdnrnn, load_vae


class ControllerPolicy:
  """Host-side batched policy for `rollouts.run_episodes`: V encodes the frame (z sampled), C acts
  on [z, h], M advances h with (z, a). Candidates' parameters are stacked on a leading axis."""

  def __init__(self, config, vae_model, vae_params, rnn_model, rnn_params, num_slots, seed):
    kind, use_cell = models.kind_of(config), config.agent.controller.use_cell
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
  _, _, template = models.build_models(config)
  es = evolve.CMAES(template, population=cfg.population, sigma=cfg.sigma,
                    weight_decay=cfg.weight_decay)
  key = jax.random.PRNGKey(config.run.seed)
  state = {'es': es.init(key), 'best': template, 'best_score': jnp.asarray(-jnp.inf),
           'key': key}
  checkpointer, state, generation = models.resume(config, 'controller', state)
  if generation >= cfg.generations:
    print(f'controller: evolved ({generation} generations); skipped')
    return
  print(f'controller: CMA-ES on {es.num_params} parameters in the {cfg.where}, '
        f'generations {generation}..{cfg.generations}')
  kind, use_cell = models.kind_of(config), config.agent.controller.use_cell
  rng = np.random.default_rng([config.run.seed, generation])
  pool = policy = None
  if cfg.where == 'dream':
    with np.load(models.run_path(config, 'series.npz')) as data:
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
  _, _, template = models.build_models(config)
  es = evolve.CMAES(template, population=config.agent.evolve.population,
                    sigma=config.agent.evolve.sigma)
  key = jax.random.PRNGKey(0)
  target = {'es': es.init(key), 'best': template, 'best_score': jnp.asarray(-jnp.inf),
            'key': key}
  state, _ = models.restore_params(os.path.join(source or config.run.logdir, 'controller'), target,
                             'controller')
  return state['best'], float(state['best_score'])


def evaluate(config, logger):
  output = models.run_path(config, 'eval.json')
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

"""Bug-or-budget checks for PlaNet: is a flat learning curve the code's fault or the budget's?

  python -m experiments.diagnose_planet planner [--env dmc_cartpole_balance] [--candidates 200]
  python -m experiments.diagnose_planet model --logdir RUN [--windows 64] [--samples 1000]

`planner`: the same planner as the agent's (`common.planning.cem.plan`) with the true simulator as its
model: each candidate action sequence is replayed in a copy of the dm_control physics from the
current state, scored by the task's true reward. One episode. A return near the task's maximum
(>= 900 on dmc_cartpole_balance) proves the planner and the action plumbing (rescaling, action
repeat), so a learned model that plans worse has a model problem. The default budget (horizon
12, 200 candidates, top 20, 5 iterations: fewer than the agent's 1000 / 100 / 10) takes ~2 min
on 2 CPU cores with cartpole's batched MuJoCo rollouts (BENCHMARKS.md).

`model`: on a run's latest checkpoint and replay, over replayed windows of 1 + context + H
steps (H = the planner's horizon): the model's H-step open-loop predicted returns under the
real actions against the true ones (correlation, mean absolute error), and the spread of its
predicted returns across `samples` uniform random action sequences from each start against the
spread between starts. A model whose returns do not depend on the actions (within-start spread
near 0) cannot plan, however well it predicts rewards along the data.
"""
import argparse
import functools
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from common.envs import dmc as dmc_lib
from common.planning import cem
from common.replay.host import Replay
from experiments import run_checkpoint
from planet import agent as agent_lib


class TrueModel:
  """A dm_control task to act in, and a copy of its physics to plan in.

  Actions are in [-1, 1], rescaled to the task's bounds and repeated `action_repeat` times with
  rewards summed, exactly as `common.envs.dmc.DMC` steps the agent's environment.
  """

  def __init__(self, task: str, action_repeat: int, seed: int = 0):
    from dm_control import suite
    domain, name = dmc_lib.split_task(task)
    self.env = suite.load(domain, name, task_kwargs={'random': seed})
    self.sim = suite.load(domain, name, task_kwargs={'random': seed})
    spec = self.env.action_spec()
    self.low, self.high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
    self.action_dim = int(spec.shape[0])
    self.repeat = action_repeat
    # Cartpole with one pole and a dense reward: MuJoCo's batched rollout in C and the task's
    # reward computed on all states at once (`cartpole_reward`), ~10x the Python loop.
    self.fast = (domain == 'cartpole' and name in ('balance', 'swingup')
                 and self.sim._n_sub_steps == 1)  # pylint: disable=protected-access
    if self.fast:
      import mujoco  # pylint: disable=g-import-not-at-top
      self._mujoco = mujoco
      self._threads = [mujoco.MjData(self.sim.physics.model.ptr) for _ in range(2)]

  def reset(self):
    self.env.reset()
    return self.env.physics.get_state().copy()

  def act(self, action):
    """One agent step in the acting env: (reward summed over the repeat, episode over)."""
    reward, last = 0.0, False
    for _ in range(self.repeat):
      time_step = self.env.step(self._scale(action))
      reward += time_step.reward or 0.0
      if time_step.last():
        last = True
        break
    return reward, last, self.env.physics.get_state().copy()

  def rewards(self, state, actions):
    """True rewards [C, H] of candidate sequences actions [C, H, A] from a physics state."""
    if self.fast:
      return self._cartpole_rewards(state, actions)
    physics, task = self.sim.physics, self.sim._task  # pylint: disable=protected-access
    substeps = self.sim._n_sub_steps  # pylint: disable=protected-access
    out = np.zeros(actions.shape[:2], np.float32)
    for c, sequence in enumerate(np.asarray(actions, np.float64)):
      with physics.reset_context():
        physics.set_state(state)
      for h, action in enumerate(sequence):
        for _ in range(self.repeat):
          task.before_step(self._scale(action), physics)
          physics.step(substeps)
          task.after_step(physics)
          out[c, h] += task.get_reward(physics)
    return out

  def _cartpole_rewards(self, state, actions):
    mujoco = self._mujoco
    from mujoco import rollout  # pylint: disable=g-import-not-at-top
    model = self.sim.physics.model.ptr
    data = self._threads[0]
    with self.sim.physics.reset_context():
      self.sim.physics.set_state(state)
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    start = np.zeros(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, self.sim.physics.data.ptr, start, spec)
    control = np.repeat(self._scale(actions), self.repeat, axis=1)       # [C, H R, A]
    states, _ = rollout.rollout(model, self._threads, start[None], control)
    nq, nv = model.nq, model.nv
    reward = cartpole_reward(states[..., 1:1 + nq], states[..., 1 + nq:1 + nq + nv], control)
    return reward.reshape(actions.shape[:2] + (self.repeat,)).sum(-1).astype(np.float32)

  def _scale(self, action):
    return self.low + (np.asarray(action, np.float64) + 1.0) / 2.0 * (self.high - self.low)


def cartpole_reward(qpos, qvel, control):
  """dm_control cartpole's dense reward (suite/cartpole.py, one pole) on batches of states:
  qpos [..., 2], qvel [..., 2], control [..., 1] -> [...]."""
  from dm_control.utils import rewards  # pylint: disable=g-import-not-at-top
  upright = (np.cos(qpos[..., 1]) + 1) / 2
  centered = (1 + rewards.tolerance(qpos[..., 0], margin=2)) / 2
  small_control = (4 + rewards.tolerance(control[..., 0], margin=1, value_at_margin=0,
                                         sigmoid='quadratic')) / 5
  small_velocity = (1 + rewards.tolerance(qvel[..., 1], margin=5)) / 2
  return upright * small_control * small_velocity * centered


def true_model_episode(task='dmc_cartpole_balance', action_repeat=8, horizon=12, candidates=200,
                       top_k=20, iterations=5, steps=None, seed=0):
  """One episode of CEM planning with the true simulator; returns (score, steps, actions)."""
  model = TrueModel(task.split('_', 1)[1], action_repeat, seed)

  current = {}   # the physics state planned from, kept in float64 on the host

  def rollout(state, actions, key):
    del state, key  # the start is `current['state']`; the simulator is deterministic
    return jax.pure_callback(
        lambda a: model.rewards(current['state'], np.asarray(a)),
        jax.ShapeDtypeStruct(actions.shape[:2], jnp.float32), actions)

  plan = jax.jit(functools.partial(
      cem.plan, rollout, None, action_dim=model.action_dim, horizon=horizon,
      candidates=candidates, top_k=min(top_k, candidates), iterations=iterations))
  current['state'], score, taken, last = model.reset(), 0.0, [], False
  key = jax.random.PRNGKey(seed)
  while not last and (steps is None or len(taken) < steps):
    key, plan_key = jax.random.split(key)
    action = np.asarray(plan(plan_key)[0])
    reward, last, current['state'] = model.act(action)
    score += reward
    taken.append(action)
  return score, len(taken), np.asarray(taken)


def model_statistics(predicted, true, random):
  """Correlation and error of predicted vs true returns [N]; spreads of random returns [N, S]."""
  predicted, true, random = (np.asarray(x, np.float64) for x in (predicted, true, random))
  within = float(random.std(1).mean())
  between = float(random.mean(1).std())
  correlation = float(np.corrcoef(predicted, true)[0, 1]) if true.std() > 0 else float('nan')
  return {'windows': len(true), 'correlation': correlation,
          'mean_abs_error': float(np.abs(predicted - true).mean()),
          'true_return_mean': float(true.mean()), 'true_return_std': float(true.std()),
          'predicted_return_mean': float(predicted.mean()),
          'within_start_spread': within, 'between_start_spread': between,
          'within_over_between': within / between if between > 0 else float('inf')}


def check_model(logdir, windows=64, samples=1000, context=5, seed=0):
  """Diagnostics of the latest checkpoint in `logdir` over its replay (see the module doc)."""
  run = run_checkpoint.load(logdir, 'experiments.diagnose_planet')
  config, meta = run.config, run.meta
  diagnose = agent_lib.make_diagnostics(config, run.obs_space, run.act_space)
  replay = Replay(config.replay, None, seed)
  replay.load(os.path.join(logdir, 'replay'))
  horizon = config.agent.planner.horizon
  batch = replay.sample(windows, 1 + context + horizon)
  batch = {k: v for k, v in batch.items() if k in ('image', 'action', 'reward', 'is_first')}
  out = jax.jit(functools.partial(diagnose, context=context, samples=samples))(
      run.state, batch, jax.random.PRNGKey(seed))
  stats = model_statistics(out['predicted'], out['true'], out['random'])
  stats.update(agent_steps=int(meta.get('agent_steps', 0)), updates=int(meta.get('updates', 0)),
               context=context, horizon=horizon, samples=samples)
  return stats


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.diagnose_planet')
  sub = parser.add_subparsers(dest='check', required=True)
  planner = sub.add_parser('planner', help='CEM with the true simulator as its model')
  planner.add_argument('--env', default='dmc_cartpole_balance')
  planner.add_argument('--action_repeat', type=int, default=8)
  planner.add_argument('--horizon', type=int, default=12)
  planner.add_argument('--candidates', type=int, default=200)
  planner.add_argument('--top_k', type=int, default=20)
  planner.add_argument('--iterations', type=int, default=5)
  planner.add_argument('--steps', type=int, default=None, help='agent steps (default: all)')
  planner.add_argument('--seed', type=int, default=0)
  model = sub.add_parser('model', help="a trained run's open-loop predictions")
  model.add_argument('--logdir', required=True)
  model.add_argument('--windows', type=int, default=64)
  model.add_argument('--samples', type=int, default=1000)
  model.add_argument('--context', type=int, default=5)
  model.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  if args.check == 'planner':
    if not args.env.startswith('dmc_'):
      parser.error(f'--env: the true-model planner needs a dmc_* task, got {args.env!r}')
    score, steps, _ = true_model_episode(
        args.env, args.action_repeat, args.horizon, args.candidates, args.top_k,
        args.iterations, args.steps, args.seed)
    result = {'check': 'planner', 'env': args.env, 'score': score, 'agent_steps': steps,
              'candidates': args.candidates, 'top_k': args.top_k,
              'iterations': args.iterations, 'horizon': args.horizon}
  else:
    if not os.path.isfile(os.path.join(args.logdir, 'config.yaml')):
      parser.error(f'--logdir: {args.logdir} has no config.yaml; pass a PlaNet run directory')
    result = {'check': 'model', **check_model(args.logdir, args.windows, args.samples,
                                             args.context, args.seed)}
  print(json.dumps(result), flush=True)
  return result


if __name__ == '__main__':
  main(sys.argv[1:])

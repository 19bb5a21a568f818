"""Goal-reaching with a trained Dreamer world model on DMC and gym tasks (issue 21, item 2).

  python -m experiments.goal_reaching --logdir RUN [--planners cem gradient] \
      [--episodes 2] [--goals 5] [--ahead 10] [--replan 1] [--space feat] [--metric euclidean]

Held-out episodes: the run's actor acts (eval mode; `--behaviour random`: uniform random
actions, each held 10 steps) in fresh episodes of the run's task
(seeds the run never trained on) while the simulator state, the joint positions and the
agent's posterior latent are recorded at every step. A goal is the state `--ahead` steps after
a start state of such an episode. For each (start, goal) pair and each planner, the simulator
is put back in the start state (same episode, so the same task randomisation), the agent
starts from its recorded posterior, and plans toward the goal's recorded latent (cost: the
distance of the predicted latents to it, `common.planning.planners.goal_contributions`), executing
the first `--replan` actions of each plan before replanning (`--replan` = the horizon: open
loop). Success: the joint positions come within `--tolerance` of the goal's at any step of the
`2 x --ahead` allowed (Euclidean, in the simulator's units; Pendulum's angle wraps around).
Tasks: `dmc_*`, and `gym_*` classic-control Pendulum and gymnasium's MuJoCo envs (their
simulator state can be restored: `common/envs/dmc.py`, `common/envs/gym.py`). One JSON line
per planner: success rate, mean closest distance, and planning seconds per env step; one more
line for doing nothing (the start-to-goal distance), the baseline a planner must beat.
"""
import argparse
import dataclasses
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from common.envs.dmc import DMC
from common.envs.gym import Gym
from common.planning import planners as planning
from dreamer import agent as agent_lib
from dreamer import planning as dreamer_planning
from dreamer import world_model as wm_lib
from experiments import run_checkpoint

HELD_OUT_SEED = 10_000   # episode seeds far from the run's own (run.seed + worker)
# `--behaviour random` holds each uniform random action this many steps: i.i.d. actions
# average out and leave a damped body (point_mass) where it started.
RANDOM_HOLD = 10


def _batched(obs: dict) -> dict:
  return {key: np.asarray(value)[None] for key, value in obs.items()}


def make_env(run, seed: int):
  """The run's env, as a simulator whose state can be recorded and restored."""
  suite, task = run.config.env.name.split('_', 1)
  return (DMC if suite == 'dmc' else Gym)(task, run.config.env, seed)


def held_out_episode(run, seed: int, steps: int, behaviour: str = 'actor') -> dict:
  """An episode of the actor (eval mode) or of uniform random actions: physics states, joint
  positions, posteriors (one per step) and the action taken after each."""
  rng = np.random.default_rng(seed)
  env = make_env(run, seed)
  policy = jax.jit(run.agent.policy, static_argnums=(4,))
  carry = run.agent.init_policy_carry(1)
  obs, key = env.step(None), jax.random.PRNGKey(seed)
  record = {'state': [], 'qpos': [], 'latent': [], 'action': []}
  for _ in range(steps):
    record['state'].append(env.physics_state())
    record['qpos'].append(env.joint_positions())
    key, act_key = jax.random.split(key)
    action, carry = policy(run.state, carry, _batched(obs), act_key, 'eval')
    if behaviour == 'random':   # the posterior above is the agent's; the action is not
      if len(record['action']) % RANDOM_HOLD == 0:
        held = jnp.asarray(rng.uniform(-1, 1, action.shape), jnp.float32)
      action = held
      carry = dict(carry, action=action)
    record['latent'].append(jax.tree.map(lambda x: np.asarray(x[0]), carry['latent']))
    record['action'].append(np.asarray(action[0]))
    obs = env.step(np.asarray(action[0]))
    if obs['is_last']:
      break
  env.close()
  return record


def reach(run, wm, config, episode, seed, start, ahead, replan, space, tolerance,
          functions) -> dict:
  """One attempt: from `start`, toward the state `ahead` steps later; closest distance."""
  plan_fn, observe_fn = functions
  params = run.state.params['world_model']
  goal_latent = jax.tree.map(lambda x: x[None], episode['latent'][start + ahead])
  goal = dreamer_planning.latent_vector(wm, params, goal_latent, space)
  goal_qpos = episode['qpos'][start + ahead]
  env = make_env(run, seed)
  env.step(None)
  env.restore(episode['state'][start])
  distance = env.joint_distance
  latent = jax.tree.map(lambda x: x[None], episode['latent'][start])
  plans = jnp.zeros((1, config.horizon, wm.action_dim), jnp.float32)
  closest = distance(env.joint_positions(), goal_qpos)
  planning_s, key, offset = 0.0, jax.random.PRNGKey(seed * 1000 + start), replan
  for t in range(2 * ahead):
    if offset == replan:   # `replan` actions of the last plan executed: plan again
      # plan_to_goal shifts the previous plan by one step; the rest of the shift here.
      previous = jnp.concatenate([plans[:, offset - 1:], plans[:, -1:].repeat(offset - 1, 1)],
                                 1)
      key, plan_key = jax.random.split(key)
      began = time.time()
      plans = jax.block_until_ready(plan_fn(params, latent, goal, previous, plan_key))
      planning_s += time.time() - began
      offset = 0
    action = plans[:, offset]
    offset += 1
    obs = env.step(np.asarray(action[0]))
    closest = min(closest, distance(env.joint_positions(), goal_qpos))
    key, obs_key = jax.random.split(key)
    latent = observe_fn(params, latent, action, _batched(obs), obs_key)
    if closest <= tolerance or obs['is_last']:
      break
  env.close()
  return {'success': bool(closest <= tolerance), 'closest': float(closest),
          'start_distance': distance(episode['qpos'][start], goal_qpos),
          'planning_s': planning_s, 'steps': t + 1}


def evaluate(logdir, planners=('cem', 'gradient'), episodes=2, goals=5, ahead=10, replan=1,
             space='feat', metric='euclidean', tolerance=0.1, length=200, seed=0,
             planner_overrides=None, behaviour='actor') -> list:
  run = run_checkpoint.load(logdir, 'experiments.goal_reaching')
  if not run.config.env.name.startswith(('dmc_', 'gym_')) or run.algo == 'planet':
    print('experiments.goal_reaching: error: needs a Dreamer run on a DMC or gym task (the '
          f'simulator state is restored); {logdir} is {run.algo} on {run.config.env.name}.',
          file=sys.stderr)
    raise SystemExit(2)
  probe = make_env(run, seed)
  try:
    probe.step(None)
    probe.joint_positions()
  except ValueError as error:
    print(f'experiments.goal_reaching: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  finally:
    probe.close()
  config = dataclasses.replace(run.config.agent.planner, **(planner_overrides or {}))
  planning.check(config)
  replan = min(replan, config.horizon)   # a plan holds `horizon` actions
  wm = wm_lib.make(run.config.agent, run.obs_space, run.act_space,
                   agent_lib.compute_dtype(run.config.run.precision))
  observe_fn = jax.jit(lambda p, latent, action, obs, key: wm_lib.observe_step(
      wm, p, latent, action, obs, key))
  rng = np.random.default_rng(seed)
  attempts = []
  for e in range(episodes):
    episode_seed = HELD_OUT_SEED + seed * 100 + e
    episode = held_out_episode(run, episode_seed, length, behaviour)
    last = len(episode['state']) - ahead - 1
    if last < 0:
      continue
    starts = rng.choice(last + 1, size=min(goals, last + 1), replace=False)
    attempts += [(episode_seed, episode, int(start)) for start in starts]
  results = []
  for kind in planners:
    plan_fn = jax.jit(lambda p, latent, goal, previous, key, kind=kind:
                      dreamer_planning.plan_to_goal(wm, kind, config, p, latent, goal, previous,
                                                    key, space, metric))
    if attempts:   # compile outside the timed planning
      _, episode, start = attempts[0]
      latent = jax.tree.map(lambda x: x[None], episode['latent'][start])
      goal = dreamer_planning.latent_vector(wm, run.state.params['world_model'], latent, space)
      jax.block_until_ready(plan_fn(
          run.state.params['world_model'], latent, goal,
          jnp.zeros((1, config.horizon, wm.action_dim)), jax.random.PRNGKey(0)))
    outcomes = [reach(run, wm, config, episode, episode_seed, start, ahead, replan, space,
                      tolerance, (plan_fn, observe_fn))
                for episode_seed, episode, start in attempts]
    results.append(dict(_summary(kind, outcomes, logdir, run, ahead, replan, space, metric,
                                 tolerance), behaviour=behaviour))
  results.append({'planner': 'none (start within tolerance)', 'attempts': len(attempts),
                  'success_rate': float(np.mean([
                      probe.joint_distance(ep['qpos'][s], ep['qpos'][s + ahead]) <= tolerance
                      for _, ep, s in attempts])) if attempts else float('nan')})
  return results


def _summary(kind, outcomes, logdir, run, ahead, replan, space, metric, tolerance) -> dict:
  steps = sum(o['steps'] for o in outcomes)
  replans = max(1, sum(-(-o['steps'] // replan) for o in outcomes))
  return {
      'planner': kind, 'attempts': len(outcomes),
      'success_rate': float(np.mean([o['success'] for o in outcomes])),
      'closest_mean': float(np.mean([o['closest'] for o in outcomes])),
      'start_distance_mean': float(np.mean([o['start_distance'] for o in outcomes])),
      'planning_s_per_plan': sum(o['planning_s'] for o in outcomes) / replans,
      'env_steps': steps, 'ahead': ahead, 'replan': replan, 'space': space, 'metric': metric,
      'tolerance': tolerance, 'logdir': logdir, 'agent_steps': int(run.meta.get('agent_steps', 0)),
      'straighten_scale': float(run.config.agent.straighten_scale)}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.goal_reaching',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--logdir', required=True)
  parser.add_argument('--planners', nargs='+', default=['cem', 'gradient'],
                      choices=planning.PLANNERS)
  parser.add_argument('--episodes', type=int, default=2)
  parser.add_argument('--goals', type=int, default=5, help='goal pairs per episode')
  parser.add_argument('--ahead', type=int, default=10, help='env steps from start to goal')
  parser.add_argument('--replan', type=int, default=1, help='actions executed per plan')
  parser.add_argument('--space', default='feat', choices=('feat', 'stoch', 'deter'))
  parser.add_argument('--metric', default='euclidean', choices=planning.METRICS)
  parser.add_argument('--tolerance', type=float, default=0.1)
  parser.add_argument('--length', type=int, default=200, help='steps of a held-out episode')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--behaviour', default='actor', choices=('actor', 'random'),
                      help='who acts in the held-out episodes: the actor (eval mode) or '
                           'uniform random actions held 10 steps (where the actor hardly '
                           'moves)')
  parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                      help='planner size, e.g. --set candidates=256 (agent.planner.*)')
  args = parser.parse_args(argv)
  overrides = {}
  for item in args.set:
    key, _, value = item.partition('=')
    if key not in planning.PlannerConfig.__dataclass_fields__:
      parser.error(f'--set {item}: not a planner field; one of '
                   f'{", ".join(planning.PlannerConfig.__dataclass_fields__)}.')
    overrides[key] = type(getattr(planning.PlannerConfig(), key))(value)
  if min(args.episodes, args.goals, args.ahead, args.replan) < 1:
    parser.error('--episodes, --goals, --ahead and --replan must be >= 1.')
  results = evaluate(args.logdir, args.planners, args.episodes, args.goals, args.ahead,
                     args.replan, args.space, args.metric, args.tolerance, args.length,
                     args.seed, overrides, args.behaviour)
  for result in results:
    print(json.dumps(result), flush=True)
  return results


if __name__ == '__main__':
  main(sys.argv[1:])

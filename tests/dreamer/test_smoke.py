"""`python -m dreamer.main` end to end on CPU with the debug size: finite losses, checkpoint,
resume; then, on the DMC run, what issue 21 adds on top of a checkpoint."""
import json
import os
import subprocess
import sys

import numpy as np

from tests.dreamer.cli import ROOT, check_train_and_resume, run_main

# DMC from proprioception (images are covered by tests/dreamer/test_agent.py).
DMC = ('--suite', 'dmc_proprio', '--set', 'env.parallel=none', '--set', 'env.time_limit=50')


def test_train_checkpoint_and_resume(tmp_path):
  check_train_and_resume(tmp_path, 'dreamerv3', 'gym_CartPole-v1', 300, (), True)


def test_dmc_with_straightening_then_geometry_and_planning_from_the_checkpoint(tmp_path):
  """Trains with agent.straighten_scale > 0 (its loss logged), measures the checkpoint's latent
  geometry with experiments.latent_geometry, evaluates it with a planner instead of the
  actor (`--eval_only --set agent.policy=mppi`), and runs experiments.goal_reaching on it."""
  extra = DMC + ('--set', 'agent.straighten_scale=0.5')
  check_train_and_resume(tmp_path, 'dreamerv3', 'dmc_cartpole_balance', 120, extra, False)
  lines = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  assert any(np.isfinite(line.get('train/straighten_loss', np.nan)) for line in lines)
  geometry = json.loads(run_script('experiments.latent_geometry', '--logdir', str(tmp_path),
                                    '--windows', '4', '--length', '16')[-1])
  for name in ('deter', 'stoch', 'feat'):
    assert -1 <= geometry[f'geometry/cos_{name}'] <= 1
  assert geometry['straighten_scale'] == 0.5
  run_main(tmp_path, 'dreamerv3', 'dmc_cartpole_balance', 120, *extra, '--eval_only',
           '--set', 'run.eval_episodes=1', '--set', 'agent.policy=mppi',
           '--set', 'agent.planner.candidates=16', '--set', 'agent.planner.top_k=4',
           '--set', 'agent.planner.iterations=2', '--set', 'agent.planner.horizon=3',
           '--set', 'agent.planner.actor_candidates=2')
  evaluated = [json.loads(line) for line in open(tmp_path / 'eval_scores.jsonl')]
  assert len(evaluated) == 1 and np.isfinite(evaluated[0]['score'])
  lines = run_script('experiments.goal_reaching', '--logdir', str(tmp_path), '--planners', 'cem',
                     '--episodes', '1', '--goals', '1', '--ahead', '3', '--length', '10',
                     '--set', 'candidates=16', '--set', 'top_k=4', '--set', 'iterations=2',
                     '--set', 'horizon=3', '--set', 'actor_candidates=2')
  cem, stay = [json.loads(line) for line in lines]
  assert cem['planner'] == 'cem' and cem['attempts'] == 1 and 0 <= cem['success_rate'] <= 1
  assert cem['planning_s_per_plan'] > 0 and stay['attempts'] == 1


def run_script(module, *args):
  """The stdout lines of `python -m module args` (exit 0), compiled as tests/dreamer/cli.py's."""
  env = dict(os.environ, XLA_FLAGS='--xla_backend_optimization_level=0')
  out = subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout.strip().splitlines()

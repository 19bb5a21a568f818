"""`python -m dreamer.main` end to end on CPU with the debug size: finite losses, checkpoint, resume."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _train_metrics(logdir):
  lines = [json.loads(line) for line in open(os.path.join(logdir, 'metrics.jsonl'))]
  return [line for line in lines if any(k.startswith('train/') for k in line)]


def _run(logdir, env, steps, *extra):
  """Runs the command line in a subprocess; returns its stdout."""
  command = [
      sys.executable, '-m', 'dreamer.main', '--config', 'dreamerv3', '--env', env,
      '--size', 'debug', '--steps', str(steps), '--logdir', str(logdir),
      '--set', 'run.log_every=0', '--set', 'run.save_every=0', '--set', 'run.report_every=0',
      '--set', 'run.prefill=64', '--set', 'run.train_ratio=8', *extra]
  # The smoke test checks behaviour, not speed: XLA's backend optimisations are skipped
  # to compile faster; JAX_PLATFORMS and MUJOCO_GL come from tests/conftest.py.
  env_vars = dict(os.environ, XLA_FLAGS='--xla_backend_optimization_level=0')
  result = subprocess.run(command, cwd=ROOT, env=env_vars, capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result.stdout


def _steps(logdir):
  return sorted(int(name) for name in os.listdir(os.path.join(logdir, 'checkpoints'))
                if name.isdigit())


@pytest.mark.parametrize('env, steps, extra, resume', [
    ('gym_CartPole-v1', 300, (), True),
    # DMC from proprioception (images are covered by tests/dreamer/test_agent.py).
    ('dmc_cartpole_balance', 120, ('--suite', 'dmc_proprio', '--set', 'env.parallel=none',
                                   '--set', 'env.time_limit=50'), False),
])
def test_train_checkpoint_and_resume(tmp_path, env, steps, extra, resume):
  _run(tmp_path, env, steps, *extra)
  metrics = _train_metrics(tmp_path)
  assert metrics, 'no train metrics written'
  for key in ('train/loss', 'train/model_loss', 'train/policy_loss', 'train/value_loss'):
    assert np.isfinite(metrics[-1][key]), key
  assert metrics[-1]['train/nonfinite'] == 0
  updates = metrics[-1]['run/updates']
  assert updates > 0
  assert _steps(tmp_path)[-1] >= steps
  assert (tmp_path / 'config.yaml').exists()
  if not resume:  # resuming is suite-independent; checked once to fit the time budget
    return
  # Re-running the same command on the run directory resumes and continues.
  out = _run(tmp_path, env, steps + 40, *extra)
  assert 'Resumed from checkpoint' in out
  assert _steps(tmp_path)[-1] >= steps + 40
  assert _train_metrics(tmp_path)[-1]['run/updates'] > updates

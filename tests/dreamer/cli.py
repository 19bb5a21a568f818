"""Runs `python -m dreamer.main` with a debug size in a subprocess (smoke and version tests)."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_main(logdir, algo, env, steps, *extra):
  """Trains `steps` agent steps; returns stdout and fails the test on a non-zero exit."""
  command = [
      sys.executable, '-m', 'dreamer.main', '--config', algo, '--env', env,
      '--size', 'debug', '--steps', str(steps), '--logdir', str(logdir),
      '--set', 'run.log_every=0', '--set', 'run.save_every=0', '--set', 'run.report_every=0',
      '--set', 'run.prefill=64', '--set', 'run.train_ratio=8', '--set', 'run.pretrain=1', *extra]
  # These tests check behaviour, not speed: XLA's backend optimisations are skipped
  # to compile faster; JAX_PLATFORMS and MUJOCO_GL come from tests/conftest.py.
  env_vars = dict(os.environ, XLA_FLAGS='--xla_backend_optimization_level=0')
  result = subprocess.run(command, cwd=ROOT, env=env_vars, capture_output=True, text=True,
                          timeout=900)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result.stdout


def checkpoint_steps(logdir):
  """The agent steps of the checkpoints in `logdir`, ascending."""
  return sorted(int(name) for name in os.listdir(os.path.join(logdir, 'checkpoints'))
                if name.isdigit())


def train_metrics(logdir):
  """The metric lines of `logdir/metrics.jsonl` that carry train metrics."""
  with open(os.path.join(logdir, 'metrics.jsonl')) as file:
    lines = [json.loads(line) for line in file]
  return [line for line in lines if any(key.startswith('train/') for key in line)]


def check_train_and_resume(logdir, algo, env, steps, extra, resume):
  """Trains through the command line: finite losses, updates, a checkpoint, the config file;
  with `resume`, re-running the same command continues from the checkpoint."""
  run_main(logdir, algo, env, steps, *extra)
  metrics = train_metrics(logdir)
  assert metrics, 'no train metrics written'
  for key in ('train/loss', 'train/model_loss', 'train/policy_loss', 'train/value_loss'):
    assert np.isfinite(metrics[-1][key]), key
  assert metrics[-1]['train/nonfinite'] == 0
  updates = metrics[-1]['run/updates']
  assert updates > 0
  assert checkpoint_steps(logdir)[-1] >= steps
  assert os.path.exists(os.path.join(logdir, 'config.yaml'))
  if not resume:  # resuming is suite-independent; checked once per file to fit the time budget
    return
  out = run_main(logdir, algo, env, steps + 40, *extra)
  assert 'Resumed from checkpoint' in out
  assert checkpoint_steps(logdir)[-1] >= steps + 40
  assert train_metrics(logdir)[-1]['run/updates'] > updates

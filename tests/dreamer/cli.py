"""Runs `python -m dreamer.main` with a debug size in a subprocess (smoke and version tests)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_main(logdir, algo, env, steps, *extra):
  """Trains `steps` agent steps; returns stdout and fails the test on a non-zero exit."""
  command = [
      sys.executable, '-m', 'dreamer.main', '--config', algo, '--env', env,
      '--size', 'debug', '--steps', str(steps), '--logdir', str(logdir),
      '--set', 'run.log_every=0', '--set', 'run.save_every=0', '--set', 'run.report_every=0',
      '--set', 'run.prefill=64', '--set', 'run.train_ratio=8', *extra]
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

"""Fixtures: small synthetic run directories for the experiments tests."""
import json
import os


def make_run(root, algo, env, seed, episodes, action_repeat=4, suite=None, steps=None):
  """A run directory with config.yaml and scores.jsonl; episodes: [(step, score), ...]."""
  directory = os.path.join(root, algo, env, f'seed{seed}')
  os.makedirs(directory, exist_ok=True)
  lines = [f'algo: {algo}']
  if suite:
    lines.append(f'suite: {suite}')
  lines.append(f'run: {{seed: {seed}, steps: {steps or episodes[-1][0]}}}')
  lines.append(f'env: {{name: {env}, action_repeat: {action_repeat}, size: [64, 64]}}')
  with open(os.path.join(directory, 'config.yaml'), 'w') as file:
    file.write('\n'.join(lines) + '\n')
  with open(os.path.join(directory, 'scores.jsonl'), 'w') as file:
    for step, score in episodes:
      file.write(json.dumps({'step': step, 'score': score, 'length': 10}) + '\n')
  return directory


import pytest  # noqa: E402


@pytest.fixture(name='make_run')
def _make_run_fixture():
  return make_run

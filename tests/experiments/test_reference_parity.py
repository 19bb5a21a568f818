"""DreamerV3 against the reference code (danijar/dreamerv3 f8817c4): the same losses, gradients
and updated parameters from the same parameters and batch (experiments/reference_parity.py).

The reference is read from ../shared/reference/dreamerv3-f8817c4 beside this checkout (or
$DREAMERV3_REFERENCE); where it is absent the test skips and says how to get it.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
REFERENCE = os.environ.get('DREAMERV3_REFERENCE') or os.path.join(
    os.path.dirname(ROOT), 'shared', 'reference', 'dreamerv3-f8817c4')
LOSSES = ['con', 'dyn', 'image', 'policy', 'rep', 'repval', 'rew', 'total', 'value', 'vector']


def test_dreamerv3_equals_the_reference(tmp_path):
  if not os.path.isdir(os.path.join(REFERENCE, 'dreamerv3')):
    pytest.skip(f'no reference at {REFERENCE}: git clone https://github.com/danijar/dreamerv3 '
                'there and check out f8817c4 (or set DREAMERV3_REFERENCE)')
  out = tmp_path / 'parity.json'
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.reference_parity', '--reference', REFERENCE,
       '--json', str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  report = json.loads(out.read_text())
  assert report['losses'] == LOSSES
  assert set(report['cases']) == {'discrete', 'continuous'}
  assert report['max_rel_err_losses'] <= 1e-4
  assert report['max_rel_err_params'] <= 1e-3
  assert report['max_significant_rel_err_grads'] <= 1e-3
  assert report['max_scale_err_grads'] <= 1e-4
  for case in report['cases'].values():
    # Every parameter of the reference compared, and the losses computed, not assumed.
    assert len(case['grads']) >= 80 and len(case['params']) == len(case['grads'])
    assert case['losses']['total']['reference'] > 1.0

"""experiments/device_check.py: the CPU dry run of the GPU check, and its budget."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(out, *args):
  start = time.time()
  proc = subprocess.run([sys.executable, '-m', 'experiments.device_check', '--out', str(out),
                         '--tiny', *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return json.load(open(os.path.join(out, 'device_check.json'))), time.time() - start


def test_tiny_dry_run_writes_results_and_compares_with_the_curve(tmp_path):
  report, _ = _run(tmp_path, '--budget', '300', '--only', 'planet', 'learning')
  steps = {step['name']: step for step in report['steps']}
  assert [step['status'] for step in report['steps']] == ['done', 'done']
  planet = steps['planet planning latency']['results'][0]
  assert planet['step_s_median'] > 0 and planet['candidates'] == 10
  learned = steps['dreamerv3 learning dmc_cartpole_balance']['results'][-1]
  assert learned['agent_step'] == 200 and learned['env_steps'] == 400
  reference = os.path.join(ROOT, '..', 'shared', 'reference_scores',
                           'dmc_proprio-dreamerv3.json.gz')
  if os.path.exists(reference):   # the published curve, read where it lies
    assert learned['reference_seeds'] >= 1
    assert learned['reference_min'] <= learned['reference_mean'] <= learned['reference_max']
  table = open(tmp_path / 'device_check.md').read()
  assert '| planet planning latency | done |' in table


def test_budget_is_kept_and_results_written_when_a_step_runs_over(tmp_path):
  report, seconds = _run(tmp_path, '--budget', '12', '--only', 'harness', 'planet')
  assert seconds < 12 + 10   # the budget, plus starting Python and asking for the device
  assert report['steps'][0]['status'] == 'out of time'   # the harness compiles for longer
  assert report['steps'][1]['status'].startswith('skipped')

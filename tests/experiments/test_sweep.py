"""The sweep launcher: commands, a tiny real local sweep, skipping finished runs, Ray."""
import json
import os
import shlex
import sys
import textwrap

import pytest

from experiments import sweep

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_DREAMER_MAIN = os.path.exists(os.path.join(REPO, 'dreamer', 'main.py'))

# Stands in for an entry point until dreamer/main.py lands: the shared flags, a config.yaml,
# scores.jsonl lines and a checkpoint directory per step budget, as the train loop writes them.
STANDIN = textwrap.dedent('''
    import argparse, json, os
    parser = argparse.ArgumentParser()
    for flag in ('--config', '--env', '--suite', '--size', '--logdir'):
      parser.add_argument(flag)
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--set', action='append', default=[])
    args = parser.parse_args()
    os.makedirs(os.path.join(args.logdir, 'checkpoints', str(args.steps)), exist_ok=True)
    with open(os.path.join(args.logdir, 'config.yaml'), 'w') as file:
      file.write(f'algo: {args.config}\\nrun: {{seed: {args.seed}, steps: {args.steps}}}\\n'
                 f'env: {{name: {args.env}, action_repeat: 1}}\\n')
    with open(os.path.join(args.logdir, 'scores.jsonl'), 'a') as file:
      file.write(json.dumps({'step': args.steps, 'score': 1.0, 'length': args.steps}) + '\\n')
''')


def test_dry_run_prints_commands(tmp_path, capsys):
  code = sweep.main(['--algos', 'dreamerv3,dreamerv2', '--suite', 'dmc_proprio', '--seeds', '2',
                     '--tasks', 'dmc_walker_walk,dmc_cheetah_run', '--steps', '1000',
                     '--set', 'run.envs=2', '--logdir', str(tmp_path), '--dry_run'])
  assert code == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2 * 2 * 2
  first = shlex.split(lines[0])
  assert first[1:] == [
      '-m', 'dreamer.main', '--config', 'dreamerv3', '--env', 'dmc_walker_walk',
      '--suite', 'dmc_proprio', '--steps', '1000', '--seed', '0', '--logdir',
      os.path.join(str(tmp_path), 'dmc_proprio', 'dreamerv3', 'dmc_walker_walk', 'seed0'),
      '--set', 'run.envs=2']
  assert not os.listdir(tmp_path)  # a dry run writes nothing
  # The suite's budget in agent steps when --steps is not given; Atari 100k launch names.
  jobs = sweep.build_jobs(['dreamerv3', 'planet'][:1], 'atari100k', [0], str(tmp_path),
                          tasks=['atari_pong'])
  assert jobs[0].command[jobs[0].command.index('--env') + 1] == 'atari100k_pong'
  assert jobs[0].command[jobs[0].command.index('--steps') + 1] == '100000'


@pytest.mark.parametrize('argv, message', [
    (['--algos', 'dreamerv9', '--suite', 'dmc_proprio'], "unknown algorithm 'dreamerv9'"),
    (['--algos', 'dreamerv3', '--suite', 'dmc_propio'], "did you mean 'dmc_proprio'"),
    (['--algos', 'planet', '--suite', 'dmc_proprio'], 'planet does not run suite dmc_proprio'),
    (['--algos', 'dreamerv3', '--suite', 'gym', '--tasks', 'gym_Foo-v0'], 'not a task of suite'),
    (['--algos', 'dreamerv3', '--suite', 'gym', '--seeds', 'x'], '--seeds'),
    (['--algos', 'dreamerv3', '--suite', 'gym', '--set', 'novalue'], 'not key=value'),
])
def test_bad_arguments_exit_2(argv, message, tmp_path, capsys):
  assert sweep.main(argv + ['--logdir', str(tmp_path), '--dry_run']) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and len(err.splitlines()) == 1


def _sweep_args(tmp_path):
  # Real `dreamer.main` processes on a real env, but the whole budget is random prefill and
  # nothing is evaluated or reported, so no network is compiled: this tests the launcher (done
  # markers, skipping); training through dreamer.main is tests/dreamer/test_smoke.py's job.
  return ['--algos', 'dreamerv3', '--suite', 'gym', '--tasks', 'gym_CartPole-v1',
          '--seeds', '2', '--size', 'debug', '--steps', '120', '--jobs', '2',
          '--set', 'run.log_every=1000', '--set', 'run.prefill=120', '--set', 'run.eval_every=0',
          '--set', 'run.report_every=0', '--logdir', str(tmp_path / 'runs')]


def test_tiny_local_sweep_then_skip(tmp_path, monkeypatch, capsys):
  if not HAVE_DREAMER_MAIN:
    (tmp_path / 'standin_main.py').write_text(STANDIN)
    monkeypatch.setenv('PYTHONPATH', str(tmp_path))
    monkeypatch.setitem(sweep.ALGOS, 'dreamerv3', sweep.Algo('standin_main', ('--config', 'dreamerv3')))
  assert sweep.main(_sweep_args(tmp_path)) == 0, capsys.readouterr().out
  out = capsys.readouterr().out
  assert out.count(' done ') == 2, out
  for seed in (0, 1):
    run = tmp_path / 'runs' / 'gym' / 'dreamerv3' / 'gym_CartPole-v1' / f'seed{seed}'
    assert (run / 'done').exists() and (run / 'config.yaml').exists()
    assert json.loads((run / 'sweep.json').read_text())['seed'] == seed
    assert sweep.progress(str(run)) >= 120
  # A second invocation skips both runs without starting a process.
  assert sweep.main(_sweep_args(tmp_path)) == 0
  out = capsys.readouterr().out
  assert '2 runs, 2 already done.' in out and out.count(' skipped ') == 2
  assert sweep.main(_sweep_args(tmp_path) + ['--dry_run']) == 0
  assert capsys.readouterr().out.count('# done: ') == 2


def test_failed_and_short_runs_are_not_done(tmp_path, monkeypatch):
  (tmp_path / 'short_main.py').write_text(STANDIN.replace(
      "str(args.steps)), exist_ok", "str(args.steps // 2)), exist_ok"))
  (tmp_path / 'fail_main.py').write_text('import sys\nsys.exit(3)\n')
  monkeypatch.setenv('PYTHONPATH', str(tmp_path))
  monkeypatch.setitem(sweep.ALGOS, 'dreamerv1', sweep.Algo('short_main', ('--config', 'x')))
  monkeypatch.setitem(sweep.ALGOS, 'dreamerv2', sweep.Algo('fail_main'))
  jobs = sweep.build_jobs(['dreamerv1', 'dreamerv2'], 'gym', [0], str(tmp_path / 'runs'),
                          tasks=['gym_CartPole-v1'], steps=10, python=sys.executable)
  results = [sweep.execute(job) for job in jobs]
  assert [r['status'] for r in results] == ['incomplete', 'failed']
  assert results[1]['rc'] == 3
  assert not any(sweep.is_done(job.logdir) for job in jobs)


def test_ray_backend_local_instance(tmp_path, monkeypatch):
  pytest.importorskip('ray')
  (tmp_path / 'standin_main.py').write_text(STANDIN)
  monkeypatch.setenv('PYTHONPATH', str(tmp_path))
  monkeypatch.setitem(sweep.ALGOS, 'dreamerv3', sweep.Algo('standin_main', ('--config', 'v3')))
  import ray
  ray.init(num_cpus=2, include_dashboard=False,
           runtime_env={'env_vars': {'PYTHONPATH': f'{sweep.REPO}{os.pathsep}{tmp_path}'}})
  try:
    jobs = sweep.build_jobs(['dreamerv3'], 'gym', [0, 1], str(tmp_path / 'runs'),
                            tasks=['gym_CartPole-v1'], steps=10)
    results = sweep.run_ray(jobs, address=None)
  finally:
    ray.shutdown()
  assert [r['status'] for r in results] == ['done', 'done']

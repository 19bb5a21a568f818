"""`--loop device` end to end: same accounting as the Python loop, resume, seeds, bad input."""
import json
import os

import jax
import numpy as np

from tests.dreamer.cli import checkpoint_steps, run_main, train_metrics

SMALL = ('--set', 'run.envs=4', '--set', 'run.batch_size=4', '--set', 'run.batch_length=16',
         '--set', 'run.chunk=25')
# Unoptimised XLA compiles several times faster (as tests/dreamer/cli.py's subprocesses).
FAST = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}


def _scores(logdir, name='scores.jsonl'):
  with open(os.path.join(logdir, name)) as file:
    return [json.loads(line) for line in file]


def test_same_updates_as_the_python_loop_and_checkpoint_read_by_it(tmp_path):
  python_dir, device_dir = tmp_path / 'python', tmp_path / 'device'
  run_main(python_dir, 'dreamerv3', 'gymnax_CartPole-v1', 200, *SMALL)
  out = run_main(device_dir, 'dreamerv3', 'gymnax_CartPole-v1', 200, '--loop', 'device', *SMALL,
                 '--set', 'run.eval_every=100', '--set', 'run.eval_episodes=3',
                 '--set', 'run.eval_envs=2')
  assert '--loop device: 1 seed(s) x 4 gymnax_CartPole-v1 envs' in out
  python_updates = train_metrics(python_dir)[-1]['run/updates']
  device = train_metrics(device_dir)[-1]
  assert device['run/updates'] == python_updates > 0
  assert np.isfinite(device['train/loss']) and device['train/nonfinite'] == 0
  assert checkpoint_steps(device_dir) == [200]
  scores = _scores(device_dir)
  assert scores and all(s['length'] >= 1 and s['score'] == s['length'] for s in scores)
  # Evaluation every 100 agent steps (one chunk: 25 iterations x 4 envs), 3 episodes each on
  # 2 eval envs, written as the Python loop writes them (CartPole: score = length).
  evals = _scores(device_dir, 'eval_scores.jsonl')
  assert [e['step'] for e in evals] == [100] * 3 + [200] * 3
  assert all(e['length'] >= 1 and e['score'] == e['length'] for e in evals)
  assert 'eval_episode/score' in train_metrics(device_dir)[-1]
  # The agent in a one-seed device checkpoint is in the Python loop's layout
  # (common/run/train_loop.py restores {'agent', 'policy_key'}; --eval_only reads it so).
  from common.run import checkpoint
  agent, _ = _agent()
  target = {'agent': jax.eval_shape(agent.init, jax.random.PRNGKey(0)),
            'policy_key': jax.random.PRNGKey(0)}
  restored, meta = checkpoint.Checkpointer(device_dir / 'checkpoints').restore(target)
  assert meta['agent_steps'] == 200 and meta['updates'] == device['run/updates']
  assert jax.tree.structure(restored['agent']) == jax.tree.structure(target['agent'])


def _agent():
  from common import envs
  from common.run import config as config_lib
  from dreamer import agent as agent_lib
  from dreamer import configs
  config = config_lib.parse(['--env', 'gymnax_CartPole-v1', '--size', 'debug', '--loop', 'device',
                             '--logdir', '/tmp/unused', *SMALL], configs.PRESETS)
  env = envs.make_jax(config.env)
  obs_space = {k: v for k, v in env.obs_space.items() if not k.startswith('log/')}
  return agent_lib.make_agent(config, obs_space, env.act_space), (config, env, obs_space)


def test_first_update_uses_the_python_loops_params_and_agrees_on_a_batch():
  from common.run import device_loop
  from experiments import bench_dreamer
  agent, (config, env, obs_space) = _agent()
  loop = device_loop.DeviceLoop(agent, env, config, env.obs_space, env.act_space)
  ls = jax.jit(loop.init, static_argnums=0, compiler_options=FAST)(3)
  # The Python loop's initial state for seed 3 (common/run/train_loop.py: split, init).
  state = agent.init(jax.random.split(jax.random.PRNGKey(3))[0])
  for ours, theirs in zip(jax.tree.leaves(ls.agent), jax.tree.leaves(state)):
    # Same draws; compiled vs eager initialisers round differently in the last bit.
    np.testing.assert_allclose(np.asarray(ours)[0], np.asarray(theirs), rtol=1e-6, atol=1e-7)
  batch = bench_dreamer.synthetic_batch(agent, obs_space, env.act_space, 4, loop.window)
  _, device_metrics = jax.jit(loop.update, compiler_options=FAST)(
      ls.agent, jax.tree.map(lambda x: x[None], batch))
  _, python_metrics = jax.jit(agent.train, compiler_options=FAST)(state, batch)
  for key in ('loss', 'model_loss', 'policy_loss', 'value_loss'):
    np.testing.assert_allclose(device_metrics[key][0], python_metrics[key], rtol=1e-5, atol=1e-6)


def test_craftax_classic_trains_checkpoints_and_resumes(tmp_path):
  # Symbolic observations: the same env and loop as pixels, without compiling the CNNs.
  extra = ('--loop', 'device', '--set', 'env.time_limit=30', '--set', 'env.pixels=false', *SMALL)
  run_main(tmp_path, 'dreamerv3', 'craftax_classic', 160, *extra)
  first = train_metrics(tmp_path)[-1]
  assert first['run/updates'] > 0 and np.isfinite(first['train/loss'])
  assert checkpoint_steps(tmp_path) == [160]
  scores = _scores(tmp_path)
  assert scores and all(s['length'] == 30 for s in scores)   # cut by the time limit
  assert 'achievement_collect_wood' in scores[0]
  out = run_main(tmp_path, 'dreamerv3', 'craftax_classic', 200, *extra)
  assert 'Resumed from checkpoint' in out and 'agent step 160' in out
  assert checkpoint_steps(tmp_path)[-1] == 200
  assert train_metrics(tmp_path)[-1]['run/updates'] > first['run/updates']


def test_two_seeds_on_minatar_write_two_runs_and_resume(tmp_path):
  # DreamerV2: its episode sampling with prioritize_ends, on the device (windows of 4 steps
  # fit inside random Breakout episodes).
  extra = ('--loop', 'device', '--seeds', '2', '--seed', '5', *SMALL,
           '--set', 'run.batch_length=4')
  run_main(tmp_path, 'dreamerv2', 'gymnax_Breakout-MinAtar', 160, *extra)
  runs = [tmp_path / 'seed5', tmp_path / 'seed6']
  first = [train_metrics(run)[0] for run in runs]
  assert first[0]['run/updates'] == first[1]['run/updates'] > 0
  assert first[0]['train/loss'] != first[1]['train/loss']    # different seeds
  for run in runs:
    assert (run / 'config.yaml').exists() and (run / 'scores.jsonl').exists()
  from experiments import export   # what experiments/plot.py reads: two seeds of one task
  infos = [export.run_info(run) for run in export.find_runs(str(tmp_path))]
  assert sorted(info['seed'] for info in infos) == [5, 6]
  assert {info['task'] for info in infos} == {'gymnax_Breakout-MinAtar'}
  out = run_main(tmp_path, 'dreamerv2', 'gymnax_Breakout-MinAtar', 200, *extra)
  assert 'Resumed from checkpoint' in out
  last = [train_metrics(run)[-1] for run in runs]
  assert last[0]['run/updates'] == last[1]['run/updates'] > first[0]['run/updates']
  assert checkpoint_steps(tmp_path)[-1] == 200
  # What --eval_only reads to evaluate each seed (tests/common/run/test_train_loop.py).
  from common.run import checkpoint
  meta = checkpoint.Checkpointer(tmp_path / 'checkpoints').read_meta()
  assert (meta['seeds'], meta['first_seed'], meta['agent_steps']) == (2, 5, 200)


def _fails(capsys, *argv):
  from dreamer import main
  try:
    main.main(['--config', 'dreamerv3', '--size', 'debug', '--logdir', '/tmp/device_loop_bad',
               *argv])
  except SystemExit as exit:
    assert exit.code == 2
  else:
    raise AssertionError('no error')
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1, lines
  return lines[0]


def test_bad_input_is_one_line_and_exit_2(capsys, monkeypatch):
  assert 'gymnax_<id>' in _fails(capsys, '--env', 'gym_CartPole-v1', '--loop', 'device')
  assert 'needs --loop device' in _fails(capsys, '--env', 'gymnax_CartPole-v1', '--seeds', '2')
  assert 'lower replay.capacity' in _fails(capsys, '--env', 'gymnax_CartPole-v1', '--loop',
                                           'device', '--set', 'replay.capacity=100_000_000_000')
  # A host of a multi-host run (as if jax.distributed had joined it to another).
  import jax
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  assert 'several hosts' in _fails(capsys, '--env', 'gymnax_CartPole-v1', '--loop', 'device')

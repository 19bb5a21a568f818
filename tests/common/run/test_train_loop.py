"""Train loop: exact train ratio, a tiny run end to end, eval-only, offline, guard, kill/resume."""
import fractions
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from common.run import schedule
from common.run import train_loop
from common.run.checkpoint import Checkpointer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))

# The tiny agent and config, shared by the in-process tests and the subprocess.
AGENT_SOURCE = textwrap.dedent('''
    import dataclasses
    import jax
    import jax.numpy as jnp
    from common.agent import Agent
    from common.envs.config import EnvConfig
    from common.replay.host import ReplayConfig
    from common.run.config import RunConfig

    @dataclasses.dataclass(frozen=True)
    class TinyConfig:
      lr: float = 0.01
      nan_after: int = -1   # updates from this one on report nonfinite (skipped)
      context: int = 0      # replay context: the policy stores carry + 1, training -(that) - 1

    @dataclasses.dataclass(frozen=True)
    class Config:
      algo: str = 'tiny'
      suite: str = 'gym'
      size: str = 'debug'
      run: RunConfig = RunConfig()
      env: EnvConfig = EnvConfig(name='gym_CartPole-v1', pixels=False, parallel='none')
      replay: ReplayConfig = ReplayConfig(capacity=100_000, chunk=16)
      agent: TinyConfig = TinyConfig()

    def make_agent(config, obs_space, act_space):
      num_actions = act_space.n

      def init(key):
        return {'w': jnp.zeros(4), 'calls': jnp.int32(0), 'key': key}

      def init_policy_carry(num):
        return jnp.zeros(num, jnp.int32)

      def policy(state, carry, obs, key, mode):
        if mode == 'eval':
          action = (obs['vector'][:, 2] > 0).astype(jnp.int32)
        else:
          action = jax.random.randint(key, obs['reward'].shape, 0, num_actions)
        carry = jnp.where(obs['is_first'], 0, carry + 1)
        return action, carry

      def train(state, batch):
        def loss_fn(w):
          return jnp.mean((batch['vector'] @ w - batch['reward']) ** 2)
        loss, grad = jax.value_and_grad(loss_fn)(state['w'])
        bad = (config.agent.nan_after >= 0) & (state['calls'] >= config.agent.nan_after)
        w = jnp.where(bad, state['w'], state['w'] - config.agent.lr * grad)
        new = {'w': w, 'calls': state['calls'] + 1, 'key': state['key']}
        metrics = {'loss': loss, 'nonfinite': bad.astype(jnp.float32)}
        if context:
          stored = batch['context/n'][:, context:]
          metrics['replay'] = {'context/n': -jnp.abs(stored) - 1}
        return new, metrics

      def report(state, batch):
        video = jnp.zeros((4, 8, 8, 3), jnp.uint8)
        return {'video/openloop': video, 'w_norm': jnp.linalg.norm(state['w'])}

      context = config.agent.context
      entries = lambda carry: {'context/n': carry.astype(jnp.float32) + 1}
      return Agent(init, init_policy_carry, policy, train, report, replay_context=context,
                   policy_entries=entries if context else None)
''')

_namespace = {}
exec(compile(AGENT_SOURCE, 'tiny_agent', 'exec'), _namespace)  # pylint: disable=exec-used
Config, make_agent = _namespace['Config'], _namespace['make_agent']


def _config(tmp_path, name='run', agent=None, **run):
  import dataclasses
  base = dict(logdir=str(tmp_path / name), steps=200, envs=2, eval_envs=1, prefill=50,
              train_ratio=8.0, batch_size=2, batch_length=8, log_every=0.0, report_every=1e-6,
              save_every=0.0, eval_every=0, eval_episodes=2)
  base.update(run)
  config = Config()
  config = dataclasses.replace(config, run=dataclasses.replace(config.run, **base))
  if agent:
    config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, **agent))
  return config


def _restore(logdir):
  checkpointer = Checkpointer(os.path.join(logdir, 'checkpoints'))
  import jax
  target = {'agent': make_agent(Config(), None, _Discrete()).init(jax.random.PRNGKey(0)),
            'policy_key': jax.random.PRNGKey(0)}
  state, meta = checkpointer.restore(target)
  checkpointer.close()
  return state, meta


class _Discrete:
  n = 2


def _expected_updates(step, prefill, ratio, batch_steps):
  return int(fractions.Fraction(max(0, step - prefill)) * fractions.Fraction(ratio) / batch_steps)


def test_train_ratio_exact():
  rng = np.random.default_rng(0)
  for ratio, batch_steps, pretrain in [(32.0, 1024, 0), (0.5, 6, 0), (1.25, 16, 3),
                                       (512.0, 1024, 100)]:
    accounting = schedule.TrainRatio(ratio, batch_steps, start=10, pretrain=pretrain)
    # Reference: a plain loop accumulating fractional credit one step at a time, with the
    # pretrain updates owed once the step counter reaches the start.
    credit, reference_total, step, total = fractions.Fraction(0), 0, 0, 0
    for _ in range(300):
      increment = int(rng.integers(1, 9))
      for _ in range(increment):
        step += 1
        if step == 10:
          reference_total += pretrain
        if step > 10:
          credit += fractions.Fraction(ratio) / batch_steps
        while credit >= 1:
          credit -= 1
          reference_total += 1
      total += accounting.due(step)
      assert total == reference_total
  with pytest.raises(ValueError, match='train_ratio'):
    schedule.TrainRatio(-1, 16)


def _env_sending_sigterm(at_call):
  """A `make_env` whose batch sends this process SIGTERM during its `at_call`-th step call."""
  from common import envs  # pylint: disable=g-import-not-at-top

  def make_env(env_config, num, seed):
    env = envs.make_batch(env_config, num, seed)
    step, calls = env.step, [0]

    def stepping(action):
      calls[0] += 1
      if calls[0] == at_call:
        os.kill(os.getpid(), signal.SIGTERM)
      return step(action)
    env.step = stepping
    return env
  return make_env


def test_eval_only_evaluates_each_seed_of_a_seeds_checkpoint(tmp_path):
  # A `--seeds 2` device-loop checkpoint holds the agents and policy keys stacked on a first
  # axis (common/run/device_loop.py `_checkpoint_parts`) and names its first seed in the meta.
  import jax
  import jax.numpy as jnp
  agent = make_agent(Config(), None, _Discrete())
  stacked = jax.tree.map(lambda *x: jnp.stack(x),
                         *[agent.init(jax.random.PRNGKey(seed)) for seed in (5, 6)])
  keys = jnp.stack([jax.random.PRNGKey(5), jax.random.PRNGKey(6)])
  saver = Checkpointer(tmp_path / 'seeds' / 'checkpoints')
  saver.save(120, {'agent': stacked, 'policy_key': keys},
             {'agent_steps': 120, 'updates': 9, 'loop': 'device', 'seeds': 2, 'first_seed': 5})
  saver.close()
  config = _config(tmp_path, name='eval', eval_only=True, eval_episodes=2,
                   from_checkpoint=str(tmp_path / 'seeds'))
  summary = train_loop.run(make_agent, config, stream=open(os.devnull, 'w'))
  assert summary['step'] == 120 and summary['updates'] == 9
  assert sorted(summary['eval_scores_by_seed']) == [5, 6]
  for seed in (5, 6):
    lines = (tmp_path / 'eval' / f'seed{seed}' / 'eval_scores.jsonl').read_text().splitlines()
    assert [json.loads(line)['step'] for line in lines] == [120, 120]
    assert [json.loads(line)['score'] for line in lines] == summary['eval_scores_by_seed'][seed]


def test_run_eval_only_offline_and_sigterm(tmp_path):
  config = _config(tmp_path, eval_every=100)
  summary = train_loop.run(make_agent, config, stream=open(os.devnull, 'w'))
  logdir = config.run.logdir
  assert summary['step'] == 200 and summary['start_step'] == 0
  expected = _expected_updates(200, 50, 8.0, 16)
  assert summary['updates'] == expected == 75
  state, meta = _restore(logdir)
  assert int(state['agent']['calls']) == expected and meta['agent_steps'] == 200
  assert summary['replay_steps'] == 200 and meta['replay']['steps'] == 200
  for name in ('config.yaml', 'metrics.jsonl', 'scores.jsonl', 'eval_scores.jsonl'):
    assert os.path.getsize(os.path.join(logdir, name)) > 0, name
  scores = [json.loads(x) for x in open(os.path.join(logdir, 'scores.jsonl'))]
  assert scores and all({'step', 'score', 'length'} <= set(s) for s in scores)
  # CartPole gives reward 1 per step after the first: score == length.
  assert all(s['score'] == s['length'] for s in scores)
  assert any(f.startswith('events') for f in os.listdir(logdir))
  metrics = [json.loads(x) for x in open(os.path.join(logdir, 'metrics.jsonl'))]
  assert any('train/loss' in m for m in metrics) and any('report/w_norm' in m for m in metrics)

  # Evaluate the checkpoint: eval scores of the greedy policy are written.
  eval_config = _config(tmp_path, name='eval', eval_only=True, from_checkpoint=logdir + '/checkpoints')
  summary = train_loop.run(make_agent, eval_config, stream=open(os.devnull, 'w'))
  assert len(summary['eval_scores']) >= 2 and summary['step'] == 200
  lines = open(os.path.join(eval_config.run.logdir, 'eval_scores.jsonl')).readlines()
  assert len(lines) == len(summary['eval_scores'])

  # Offline: train from the first run's replay, no env stepping, nothing written to it.
  chunks = sorted(os.listdir(os.path.join(logdir, 'replay')))
  offline = _config(tmp_path, name='offline', offline_replay=os.path.join(logdir, 'replay'),
                    steps=32)
  summary = train_loop.run(make_agent, offline, stream=open(os.devnull, 'w'))
  assert summary['updates'] == 16 and summary['replay_steps'] == 200
  assert sorted(os.listdir(os.path.join(logdir, 'replay'))) == chunks
  assert not os.path.exists(os.path.join(offline.run.logdir, 'replay'))

  # SIGTERM mid-run: finish the step, save, return.
  interrupted = _config(tmp_path, name='term', steps=10_000)
  summary = train_loop.run(make_agent, interrupted, make_env=_env_sending_sigterm(at_call=60),
                           stream=open(os.devnull, 'w'))
  assert summary['interrupted'] and summary['step'] < 10_000
  _, meta = _restore(interrupted.run.logdir)
  assert meta['agent_steps'] == summary['step']

  # A signal as a long burst of updates falls due (2,000 pretrain updates once the prefill
  # ends) stops before them; they stay owed in the checkpoint, so a resume runs them.
  burst = _config(tmp_path, name='burst', steps=10_000, pretrain=2_000)
  # The env call that completes the prefill (2 envs per call, one reset call first).
  at_prefill = _env_sending_sigterm(at_call=burst.run.prefill // burst.run.envs + 1)
  summary = train_loop.run(make_agent, burst, make_env=at_prefill, stream=open(os.devnull, 'w'))
  assert summary['interrupted'] and summary['updates'] == 0
  state, meta = _restore(burst.run.logdir)
  assert meta['updates'] == int(state['agent']['calls']) == 0


def test_collect_only_run_says_so_once(tmp_path):
  import io  # pylint: disable=g-import-not-at-top
  stream = io.StringIO()
  summary = train_loop.run(make_agent, _config(tmp_path, steps=60, train_ratio=0.0),
                           stream=stream)
  assert summary['updates'] == 0 and summary['step'] == 60
  assert stream.getvalue().count('only collects') == 1


def test_replay_context_stores_policy_latents_and_writes_back(tmp_path):
  """An agent with a replay context: random prefill steps store zeros, the policy's steps its
  entries, trained windows get the train step's entries back; windows are 1 + T steps; the
  ratio counts from when replay first holds run.train_starts windows (no burst for the wait)."""
  config = _config(tmp_path, agent={'context': 1}, prefill=10, train_starts=40, pretrain=1)
  summary = train_loop.run(make_agent, config, stream=open(os.devnull, 'w'))
  # Window 9 = 1 + 8 steps; 2 streams of n steps hold 2 (n - 8) starts >= 40 from step 56 on.
  assert summary['updates'] == 1 + int((200 - 56) * 8.0 / 16) == 73
  _, meta = _restore(config.run.logdir)
  assert meta['train_start'] == 56 and meta['updates'] == 73
  directory = os.path.join(config.run.logdir, 'replay')
  streams = {}
  for name in sorted(os.listdir(directory)):
    with np.load(os.path.join(directory, name)) as chunk:
      streams.setdefault(int(name.split('-s')[1][:4]), []).append(chunk['context/n'])
  for stream, chunks in streams.items():
    values = np.concatenate(chunks)
    assert len(values) == 100
    np.testing.assert_array_equal(values[:5], 0.0)   # prefill: 10 steps over 2 streams
    assert (values[5:] != 0).all()                     # the policy stored an entry
    assert (values[5:] >= 1).any() and (values[5:] <= -1).any()   # some written back


def test_nonfinite_guard_stops(tmp_path):
  config = _config(tmp_path, agent={'nan_after': 3}, max_nonfinite=5, save_every=1e9)
  with pytest.raises(schedule.NonFiniteError, match=r'last finite update at agent step \d+; '
                     r'resume from checkpoint'):
    train_loop.run(make_agent, config, stream=open(os.devnull, 'w'))


SCRIPT = AGENT_SOURCE + textwrap.dedent('''
    import dataclasses, json, os, sys
    from common.run import train_loop
    jax.config.update('jax_compilation_cache_dir', os.path.expanduser('~/.cache/worldmodels_jax/xla'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)

    def main():
      logdir, steps, summary_path, save_every = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
      parallel = sys.argv[5] if len(sys.argv) > 5 else 'none'
      config = Config()
      env_name = sys.argv[6] if len(sys.argv) > 6 else config.env.name
      config = dataclasses.replace(config, run=dataclasses.replace(
          config.run, logdir=logdir, steps=steps, envs=2, prefill=50, train_ratio=8.0,
          batch_size=2, batch_length=8, log_every=0.5, report_every=0.0, save_every=save_every),
          env=dataclasses.replace(config.env, parallel=parallel, name=env_name))
      summary = train_loop.run(make_agent, config)
      json.dump(summary, open(summary_path, 'w'))

    if __name__ == '__main__':  # env worker processes import this file again
      main()
''')


def test_sigkill_resume(tmp_path):
  script = tmp_path / 'run.py'
  script.write_text(SCRIPT)
  logdir = str(tmp_path / 'killed')
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  process = subprocess.Popen([sys.executable, str(script), logdir, '1000000',
                              str(tmp_path / 'first.json'), '0.3'], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  checkpoints = os.path.join(logdir, 'checkpoints')
  deadline = time.time() + 60
  while time.time() < deadline:
    steps = [n for n in os.listdir(checkpoints) if n.isdigit()] if os.path.isdir(checkpoints) else []
    if len(steps) >= 2:
      break
    assert process.poll() is None, process.stderr.read().decode()
    time.sleep(0.1)
  time.sleep(0.15)  # likely mid-training or mid-save
  process.kill()
  process.wait()
  _, meta = _restore(logdir)
  replay_dir = os.path.join(logdir, 'replay')
  chunks_at_kill = {n: open(os.path.join(replay_dir, n), 'rb').read()
                    for n in os.listdir(replay_dir) if n.endswith('.npz')}
  assert meta['agent_steps'] > 50 and meta['updates'] == _expected_updates(
      meta['agent_steps'], 50, 8.0, 16)

  final_steps = meta['agent_steps'] + 100
  result = subprocess.run([sys.executable, str(script), logdir, str(final_steps),
                           str(tmp_path / 'second.json'), '1000'], cwd=ROOT, env=env,
                          capture_output=True, timeout=120)
  assert result.returncode == 0, result.stderr.decode()[-3000:]
  summary = json.load(open(tmp_path / 'second.json'))
  assert summary['start_step'] == meta['agent_steps']
  assert summary['step'] == final_steps
  # Replay intact: every chunk on disk at the kill is still there, unchanged, and loaded.
  for name, data in chunks_at_kill.items():
    assert open(os.path.join(replay_dir, name), 'rb').read() == data
  assert summary['replay_steps'] >= meta['replay']['steps'] + 100
  assert b'Resumed from checkpoint' in result.stdout
  # The killed run's lines after the checkpoint were dropped: each step is logged once, in order.
  for name in ('scores.jsonl', 'metrics.jsonl'):
    steps = [json.loads(line)['step'] for line in open(os.path.join(logdir, name))]
    assert steps == sorted(steps), name
  # The agent state continued from the checkpoint: its update counter matches the ratio.
  state, final_meta = _restore(logdir)
  assert int(state['agent']['calls']) == final_meta['updates'] == _expected_updates(
      final_steps, 50, 8.0, 16)


def test_prefetching_keeps_the_ratio_and_the_batches(tmp_path):
  """Batches sampled ahead in a thread (run.prefetch): the same number of updates as sampling
  in the loop, and from a replay that does not change the very same batches in order (the
  trained weights agree bit for bit)."""
  import jax  # pylint: disable=g-import-not-at-top
  online = {}
  for prefetch in (0, 2):
    config = _config(tmp_path, name=f'online{prefetch}', prefetch=prefetch, report_every=0.0)
    summary = train_loop.run(make_agent, config, stream=open(os.devnull, 'w'))
    state, _ = _restore(config.run.logdir)
    online[prefetch] = (summary['updates'], int(state['agent']['calls']))
  assert online[0] == online[2] == (75, 75)
  replay_dir = os.path.join(tmp_path, 'online0', 'replay')
  weights = {}
  for prefetch in (0, 1, 3):
    config = _config(tmp_path, name=f'offline{prefetch}', prefetch=prefetch,
                     offline_replay=replay_dir, steps=64, report_every=0.0)
    summary = train_loop.run(make_agent, config, stream=open(os.devnull, 'w'))
    assert summary['updates'] == 32
    state, _ = _restore(config.run.logdir)
    weights[prefetch] = np.asarray(jax.device_get(state['agent']['w']))
  assert np.any(weights[0] != 0)
  np.testing.assert_array_equal(weights[0], weights[1])
  np.testing.assert_array_equal(weights[0], weights[3])


def test_prefetcher_is_bounded_and_reraises_in_the_loop():
  import threading  # pylint: disable=g-import-not-at-top
  from common.run import prefetch  # pylint: disable=g-import-not-at-top
  calls = []

  def sample():
    calls.append(len(calls))
    if len(calls) == 5:
      raise ValueError('replay broke')
    return {'n': len(calls)}, len(calls)
  fetcher = prefetch.Prefetcher(sample, lambda batch: batch, depth=2, lock=threading.Lock())
  time.sleep(0.3)
  assert len(calls) <= 3   # two queued and one waiting to be queued: bounded
  assert [fetcher.get()[1] for _ in range(4)] == [1, 2, 3, 4]
  with pytest.raises(ValueError, match='replay broke'):
    fetcher.get()
  fetcher.close()
  with pytest.raises(ValueError, match='run.prefetch'):
    prefetch.Prefetcher(sample, lambda batch: batch, depth=0, lock=threading.Lock())


def test_loop_compiles_its_train_step_and_policy_once(tmp_path, caplog):
  """The guard and the policy carry start where the jitted steps return them, so the second
  update and the second policy call reuse the first compile."""
  import logging  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  previous = jax.config.jax_log_compiles
  jax.config.update('jax_log_compiles', True)
  try:
    with caplog.at_level(logging.WARNING):
      summary = train_loop.run(make_agent, _config(tmp_path, steps=120, report_every=0.0),
                               stream=open(os.devnull, 'w'))
  finally:
    jax.config.update('jax_log_compiles', previous)
  assert summary['updates'] > 2
  text = caplog.text
  assert text.count('Compiling jit(train_step)') == 1
  assert text.count('Compiling jit(policy_step)') == 1


def test_sigterm_to_the_process_group_stops_cleanly(tmp_path):
  """`timeout` and cluster schedulers signal the whole process group: the env worker processes
  leave stopping to the parent, which saves and says so in one line, with no crash warning.
  The env's steps take 50 ms, so the signal finds workers inside a step."""
  script = tmp_path / 'run.py'
  script.write_text(SCRIPT)
  logdir = str(tmp_path / 'run')
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  process = subprocess.Popen([sys.executable, str(script), logdir, '1000000',
                              str(tmp_path / 'summary.json'), '1000', 'process',
                              'gym_tests.common.run.slow_env:SlowCartPole-v0'], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
  metrics = os.path.join(logdir, 'metrics.jsonl')
  deadline = time.time() + 60
  while not (os.path.exists(metrics) and '"run/updates"' in open(metrics).read()):
    assert process.poll() is None and time.time() < deadline, process.stderr.read().decode()
    time.sleep(0.1)
  os.killpg(process.pid, signal.SIGTERM)
  out, err = (text.decode() for text in process.communicate(timeout=60))
  assert process.returncode == 0, err[-3000:]
  assert 'crashed' not in out + err, err[-3000:]
  stops = [line for line in out.splitlines() if 'SIGTERM' in line]
  assert len(stops) == 1 and 'run the same command to resume' in stops[0], out[-2000:]
  assert json.load(open(tmp_path / 'summary.json'))['interrupted']

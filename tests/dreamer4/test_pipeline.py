"""`python -m dreamer4.main` end to end at debug size, from a replay the suite wrote of the real
gymnax Breakout-MinAtar, and the key-value cache against the full pass."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import envs
from common.envs.config import EnvConfig
from common.envs.jax_env import JaxBatch
from common.replay.host import Replay, ReplayConfig
from dreamer4 import data as data_lib
from dreamer4 import dynamics, main as d4_main, transformer
from experiments import dreamer4_table

ENV = 'gymnax_Breakout-MinAtar'


def write_replay(directory, steps=160, num=2, seed=0):
  """Random play of the real env through the suite's replay writer (1 chunk = 64 steps)."""
  env = JaxBatch(envs.make_jax(EnvConfig(name=ENV)), num, seed)
  replay = Replay(ReplayConfig(chunk=64), directory)
  rng = np.random.default_rng(seed)
  obs = env.step(np.zeros(num, np.int32))
  for _ in range(steps):
    action = rng.integers(0, 3, num).astype(np.int32)
    for i in range(num):
      replay.add({**{k: v[i] for k, v in obs.items()}, 'action': action[i]}, i)
    obs = env.step(action)
  replay.close()


@pytest.fixture(scope='module')
def replay_dir(tmp_path_factory):
  directory = str(tmp_path_factory.mktemp('replay'))
  write_replay(directory)
  return directory


def test_dataset_reads_the_suites_replay(replay_dir):
  """Frames are MinAtar's 10 x 10 x 4 grids; returns are those of the complete episodes."""
  dataset = data_lib.Dataset(replay_dir, ENV, labelled=0.5, seed=0)
  assert dataset.steps == 320 and dataset.frames[0].shape[1:] == (10, 10, 4)
  streams = data_lib.read_streams(replay_dir)
  expected = []
  for stream in streams:   # a NumPy loop over the episodes of each stream
    starts = np.flatnonzero(stream['is_first'])
    for start in starts:
      ends = np.flatnonzero(stream['is_last'][start:])
      if len(ends):
        expected.append(stream['reward'][start + 1:start + ends[0] + 1].sum())
  assert sorted(dataset.returns) == sorted(expected) and len(expected) > 5
  batch = dataset.sample(4, 6)
  assert batch['frames'].shape == (4, 6, 10, 10, 4)
  # Labelling is per episode: one flag for all steps of an episode.
  for stream_episode, stream_flag in zip(dataset.episode, dataset.has_action):
    for episode in np.unique(stream_episode):
      assert len(set(stream_flag[stream_episode == episode])) == 1


def test_all_stages_then_resume(replay_dir, tmp_path, capsys):
  logdir = str(tmp_path / 'run')
  argv = ['--env', ENV, '--size', 'debug', '--logdir', logdir,
          '--set', f'run.offline_replay={replay_dir}', '--set', 'agent.dynamics.labelled=0.5']
  d4_main.main(argv)
  result = json.load(open(os.path.join(logdir, 'eval.json')))
  dataset = data_lib.Dataset(replay_dir, ENV)
  assert result['dataset']['episodes'] == len(dataset.returns)
  for policy in ('bc', 'agent'):
    assert result[policy]['episodes'] == 2 and np.isfinite(result[policy]['mean'])
  for stage in ('tokenizer', 'dynamics', 'finetune', 'imagine'):
    assert os.listdir(os.path.join(logdir, stage))
  text = dreamer4_table.table([logdir, logdir])
  assert f"{result['dataset']['episodes']} complete episodes" in text
  assert f"| run | {result['bc']['mean']:.3f} | {result['agent']['mean']:.3f} | 2 |" in text
  capsys.readouterr()
  d4_main.main(argv + ['--stage', 'imagine'])   # every stage is done: each is skipped
  out = capsys.readouterr().out
  for stage in ('tokenizer', 'dynamics', 'finetune', 'imagine'):
    assert f'{stage}: trained' in out and 'skipped' in out.split(f'{stage}:')[1].split('\n')[0]


def test_cli_errors_exit_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as error:
    d4_main.main(['--env', ENV, '--size', 'debug', '--logdir', str(tmp_path)])
  assert error.value.code == 2 and 'run.offline_replay' in capsys.readouterr().err
  with pytest.raises(SystemExit) as error:
    d4_main.main(['--env', ENV, '--size', 'debug', '--logdir', str(tmp_path),
                  '--set', f'run.offline_replay={tmp_path}/missing'])
  assert error.value.code == 2 and 'not a directory' in capsys.readouterr().err
  with pytest.raises(SystemExit) as error:
    d4_main.main(['--stage', 'nope'])
  assert error.value.code == 2


def test_cached_steps_equal_the_full_pass():
  """Frame by frame through the key-value cache gives the full pass's outputs (two episodes)."""
  model = dynamics.Dynamics(3, 2, 1, 4, 16, 4, 2, 1, 2)
  batch, frames = 2, 5
  key = jax.random.PRNGKey(0)
  z = jax.random.normal(key, (batch, frames, 2, 3))
  tau = jnp.array([[0.5, 0.25, 0.75, 0.0, 0.5]] * batch)
  d = jnp.array([[0.25, 0.25, 0.25, 1.0, 0.5]] * batch)
  action = jnp.array([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
  known = jnp.array([[0, 1, 1, 0, 1], [0, 1, 1, 1, 1]], bool)
  episode = jnp.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]])
  params = model.init(key, z, tau, d, action, known, episode)['params']
  full_prediction, full_h = model.apply({'params': params}, z, tau, d, action, known, episode)
  cache = dynamics.empty_cache(model, batch, 8)

  @jax.jit   # one compile for all frames
  def step(cache, inputs, position):
    prediction, h, new = model.apply({'params': params}, cache, *inputs, position,
                                     method=model.step)
    return prediction, h, transformer.write_cache(cache, new, inputs[-1], position)

  for t in range(frames):
    position = jnp.full((batch,), t)
    inputs = (z[:, t], tau[:, t], d[:, t], action[:, t], known[:, t], episode[:, t])
    prediction, h, cache = step(cache, inputs, position)
    np.testing.assert_allclose(prediction, full_prediction[:, t], atol=1e-5)
    np.testing.assert_allclose(h, full_h[:, t], atol=1e-5)


def test_ring_cache_reads_one_training_window():
  """A ring of W - 1 cached frames gives the full pass whose frames read W frames each."""
  net = transformer.SpaceTimeTransformer(layers=4, heads=2, kv_heads=1, temporal_every=2,
                                         window=3)
  batch, frames, tokens, width = 2, 7, 3, 16
  key = jax.random.PRNGKey(1)
  x = jax.random.normal(key, (batch, frames, tokens, width))
  space = np.ones((tokens, tokens), bool)
  episode = jnp.array([[0] * 7, [0, 0, 1, 1, 1, 1, 1]])
  params = net.init(key, x, space, episode)['params']
  full = net.apply({'params': params}, x, space, episode)
  cache = transformer.init_cache(batch, 2, tokens, 4, 2, 2, 1, width)

  @jax.jit   # one compile for all frames
  def step(cache, frame, frame_episode, position):
    y, new = net.apply({'params': params}, frame, space, cache, frame_episode, position,
                       method=net.step)
    return y, transformer.write_cache(cache, new, frame_episode, position)

  for t in range(frames):
    position = jnp.full((batch,), t)
    y, cache = step(cache, x[:, t:t + 1], episode[:, t], position)
    np.testing.assert_allclose(y[:, 0], full[:, t], atol=1e-5)

"""Every stage of `python -m world_models_ha.main` end to end at debug size, on real envs."""
import json
import os

import numpy as np
import pytest

from world_models_ha import main as wm_main
from world_models_ha import rollouts


def test_doom_all_stages_in_the_dream_then_resume(tmp_path, capsys):
  logdir = str(tmp_path / 'doom')
  argv = ['--env', 'doom_take_cover', '--size', 'debug', '--logdir', logdir,
          '--set', 'env.time_limit=12', '--set', 'agent.evolve.dream_steps=10']
  wm_main.main(argv + ['--stage', 'all'])
  episodes = rollouts.list_episodes(os.path.join(logdir, 'rollouts'))
  assert len(episodes) == 3
  data = rollouts.load_episode(episodes[0])
  # The frame before each action; not ViZDoom's all-zero screen after the last one.
  assert data['obs'].shape == (len(data['action']), 64, 64, 3)
  assert all(frame.any() for frame in data['obs'])
  assert set(np.unique(data['action'])) <= {-1.0, 0.0, 1.0}
  with np.load(os.path.join(logdir, 'series.npz')) as series:
    assert series['mean'].shape[-1] == 64 and np.isfinite(series['mean']).all()
  result = json.load(open(os.path.join(logdir, 'eval.json')))
  assert result['episodes'] == 2 and 0 < result['mean'] <= 12
  # The bug-or-budget checks run on this run directory.
  from experiments import diagnose_world_models  # pylint: disable=g-import-not-at-top
  report = diagnose_world_models.main(['--logdir', logdir, '--episodes', '2',
                                       '--dream_episodes', '4'])
  for policy in ('stay', 'random', 'evolved'):
    times = report['survival'][policy]
    assert 0 < times['real'] <= 12 and 0 < times['dream_tau_1.15'] <= 10, (policy, times)
  assert [b['steps'] for b in report['done_head']] == ['0-100', '100-200', '200-300', '300-500',
                                                        '500-']
  assert report['reconstruction_mse']['other'] > 0 and report['verdict']
  capsys.readouterr()
  wm_main.main(argv + ['--stage', 'all'])  # everything exists: every stage is skipped
  out = capsys.readouterr().out
  for stage in ('collect', 'vae', 'encode', 'mdnrnn', 'controller', 'evaluate'):
    assert f'{stage}:' in out and 'skipped' in out.split(f'{stage}:')[1].split('\n')[0]


def test_car_racing_stages_in_the_real_env(tmp_path):
  logdir = str(tmp_path / 'car')
  argv = ['--env', 'car_racing', '--size', 'debug', '--logdir', logdir,
          '--set', 'env.time_limit=8', '--set', 'agent.collect.episodes=2',
          '--set', 'agent.evolve.population=2', '--set', 'agent.evolve.rollouts=1',
          '--set', 'agent.evolve.generations=1', '--set', 'agent.evolve.select_episodes=1',
          '--set', 'run.eval_episodes=1', '--set', 'agent.vae.z_size=64']  # Doom's VAE program
  for stage in ('collect', 'vae', 'encode', 'mdnrnn', 'controller', 'evaluate'):
    wm_main.main(argv + ['--stage', stage])
  data = rollouts.load_episode(rollouts.list_episodes(os.path.join(logdir, 'rollouts'))[0])
  assert data['action'].shape == (8, 3) and data['obs'].dtype == np.uint8
  result = json.load(open(os.path.join(logdir, 'eval.json')))
  assert result['episodes'] == 1 and np.isfinite(result['mean'])


def test_bad_stage_and_missing_inputs_fail_clearly(tmp_path, capsys):
  with pytest.raises(SystemExit) as error:
    wm_main.main(['--env', 'car_racing', '--stage', 'train'])
  assert error.value.code == 2 and '--stage' in capsys.readouterr().err
  with pytest.raises(FileNotFoundError, match='collect stage'):
    wm_main.main(['--env', 'car_racing', '--size', 'debug', '--logdir', str(tmp_path),
                  '--stage', 'vae'])
  # Several hosts train V and M only; the other stages are refused before joining.
  with pytest.raises(SystemExit) as error:
    wm_main.main(['--env', 'car_racing', '--size', 'debug', '--logdir', str(tmp_path),
                  '--stage', 'all', '--set', 'run.processes=2',
                  '--set', 'run.coordinator=localhost:1'])
  assert error.value.code == 2
  assert 'train the vae and mdnrnn stages only' in capsys.readouterr().err


def test_env_pool_processes_match_in_process():
  kwargs = dict(name='doom_take_cover', num=2, time_limit=5)
  results = []
  for parallel in ('process', 'none'):
    with rollouts.EnvPool(parallel=parallel, **kwargs) as pool:
      policy = rollouts.RandomPolicy('doom_take_cover', 2, hold=3, seed=0)
      results.append(rollouts.run_episodes(pool, policy, [0, 0, 0], [4, 5, 6]))
  np.testing.assert_array_equal(results[0][1], [5, 5, 5])
  np.testing.assert_array_equal(results[0][0], results[1][0])


def test_doom_frames_are_the_game_view_above_the_status_bar():
  """As the reference (640x480 with the status bar, rows 0:400): the bar is drawn, then cut."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  env = rollouts.FrameEnv('doom_take_cover', time_limit=10)
  try:
    frame = env.reset(seed=0)
    screen = env._env.unwrapped.game.get_state().screen_buffer   # pylint: disable=protected-access
    view = screen[:rollouts.DOOM_VIEW_ROWS]
    expected = np.asarray(Image.fromarray(view).resize((64, 64), Image.BILINEAR))
    np.testing.assert_array_equal(frame, expected)
    import gymnasium as gym  # pylint: disable=g-import-not-at-top
    plain = gym.make('VizdoomTakeCover-v1')   # the scenario's own settings: no status bar
    no_bar = plain.reset(seed=0)[0]['screen']
    assert screen.shape == no_bar.shape == (240, 320, 3)
    difference = np.abs(screen[209:].astype(int) - no_bar[209:]).mean()
    assert difference > 20, difference   # the bottom rows are the bar, not the floor
    # Drawing the bar (a re-init of the game) leaves the game itself as the scenario's: the same
    # seed and actions end the episode at the same step.
    env.time_limit = 2100
    env.reset(seed=3)
    plain.reset(seed=3)
    actions = np.random.default_rng(0).integers(-1, 2, 2100)
    for step, action in enumerate(actions):
      _, _, terminated, _ = env.step([float(action)])
      plain_terminated = plain.step(env._doom_actions[int(action)])[2]   # pylint: disable=protected-access
      assert terminated == plain_terminated, step
      if terminated:
        break
    assert 0 < step < 2099
    plain.close()
  finally:
    env.close()

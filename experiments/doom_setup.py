"""How our DoomTakeCover compares with the reference's game (World Models issue 18, item 6).

  python -m experiments.doom_setup [--episodes 100] [--view_episodes 3]

The reference plays ppaquette's DoomTakeCover-v0 (doom_py, ViZDoom ~1.0, skill 5, 640x480 with
the status bar, rows 0:400 kept); we play ViZDoom 1.3's VizdoomTakeCover-v1 (skill 4 from its
scenario file, 320x240). Two measurements:
  * random policies' episode lengths at skill 4 and 5: a uniformly random action every step
    (the paper's random baseline, 210 +- 108) and the collection policy (actions held 1..10);
  * the 64x64 frames: the reference's view (640x480, status bar, rows 0:400) against candidate
    crops at 320x240 over the same game states (the game logic does not depend on the screen).
"""
import argparse
import json

import numpy as np
from PIL import Image

from world_models_ha import rollouts


def _game_env(resolution=None, hud=None, skill=None):
  import gymnasium as gym
  import vizdoom
  from vizdoom import gymnasium_wrapper  # noqa: F401 (registers the Vizdoom ids)
  env = gym.make('VizdoomTakeCover-v1', disable_env_checker=True)
  game = env.unwrapped.game
  game.close()
  if resolution is not None:
    game.set_screen_resolution(getattr(vizdoom.ScreenResolution, resolution))
  if hud is not None:
    game.set_render_hud(hud)
  if skill is not None:
    game.set_doom_skill(skill)
  game.init()
  return env


def random_lengths(skill, hold, episodes, seed=0):
  """Episode lengths [episodes] of the random policy holding each action 1..hold steps."""
  env = rollouts.FrameEnv('doom_take_cover', time_limit=2100)
  game = env._env.unwrapped.game   # pylint: disable=protected-access
  # Set before init: after a close() and init(), ViZDoom 1.3's set_doom_skill gives one easier
  # game whatever the value (~325 steps for a random action every step, skills 4 and 5 alike).
  game.close()
  game.set_doom_skill(skill)
  game.init()
  policy = rollouts.RandomPolicy('doom_take_cover', 1, hold, seed)
  lengths = []
  try:
    for episode in range(episodes):
      frame, first, steps, done = env.reset(seed=seed * 100_000 + episode), True, 0, False
      while not done:
        action = policy(frame[None], np.array([first]), None)[0]
        frame, _, terminated, truncated = env.step(action)
        first, steps, done = False, steps + 1, terminated or truncated
      lengths.append(steps)
  finally:
    env.close()
  return np.asarray(lengths)


def view_differences(episodes, crops=(200, 202, 204, 206, 208), seed=0):
  """Mean |difference| (of 255) of our 64x64 frames from the reference's, per candidate view."""
  resize = lambda x: np.asarray(Image.fromarray(x).resize((64, 64), Image.BILINEAR)).astype(int)
  envs = {'reference': _game_env('RES_640X480', True), 'bar': _game_env('RES_320X240', True),
          'no_bar': _game_env('RES_320X240', False)}
  rng = np.random.default_rng(seed)
  differences = {}
  try:
    for episode in range(episodes):
      screens = {k: env.reset(seed=episode)[0]['screen'] for k, env in envs.items()}
      done = False
      while not done:
        reference = resize(screens['reference'][:400])
        views = {f'status bar, rows 0:{rows}': screens['bar'][:rows] for rows in crops}
        views['no status bar, whole screen'] = screens['no_bar']
        for name, view in views.items():
          differences.setdefault(name, []).append(float(np.abs(resize(view) - reference).mean()))
        action = int(rng.integers(0, 3))
        steps = {k: env.step(action) for k, env in envs.items()}
        screens = {k: out[0]['screen'] for k, out in steps.items()}
        done = steps['reference'][2] or steps['reference'][3]
  finally:
    for env in envs.values():
      env.close()
  return {name: {'mean': float(np.mean(v)), 'p95': float(np.percentile(v, 95)), 'frames': len(v)}
          for name, v in differences.items()}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.doom_setup')
  parser.add_argument('--episodes', type=int, default=100, help='per random policy and skill')
  parser.add_argument('--view_episodes', type=int, default=3)
  args = parser.parse_args(argv)
  result = {'random': {}, 'views': view_differences(args.view_episodes)}
  for skill in (4, 5):
    for name, hold in (('every_step', 1), ('held_1_to_10', 10)):
      lengths = random_lengths(skill, hold, args.episodes)
      result['random'][f'skill_{skill}_{name}'] = {'mean': float(lengths.mean()),
                                                   'std': float(lengths.std()),
                                                   'episodes': len(lengths)}
  print(json.dumps(result, indent=1), flush=True)
  return result


if __name__ == '__main__':
  main()

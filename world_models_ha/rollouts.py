"""Real-environment rollouts for World Models: 64x64 frames, worker processes, episodes on disk.

`FrameEnv` wraps CarRacing-v3 (gymnasium, Box2D) or VizdoomTakeCover-v1 (ViZDoom) and returns
64x64 RGB uint8 frames as the reference code makes them (CarRacing: the top 84 rows without the
dashboard, resized; Doom: the game view above the status bar, resized; see `DOOM_VIEW_ROWS`).
`EnvPool` steps N of them in worker processes. `run_episodes` runs a queue of episodes over the
pool's slots with a host-side batched policy, so P candidates x R rollouts are evaluated N at a
time.

An episode on disk (`rollouts/<id>.npz`): `obs` uint8 [T, 64, 64, 3], the frame seen before each
action (as the reference's extract.py records them: the frame after the last action is not kept;
ViZDoom returns an all-zero screen there), `action` float32 [T, A], `reward` float32 [T], `done`
bool [T] (true at the last step only when the game ended rather than the time limit). Files of
T + 1 frames (written before this layout) load with their last frame dropped.
"""
import multiprocessing
import os
from typing import Callable, Optional

import numpy as np
from PIL import Image

from world_models_ha import configs

FRAME_SHAPE = (64, 64, 3)
# The reference renders ppaquette's DoomTakeCover at 640x480 with the status bar and keeps rows
# 0:400 (doomrnn/doomreal.py:22), the 3D view less its bottom 1%. ViZDoom draws the status bar
# 32 rows high at our 320x240, so the same view is rows 0:204; of the crops tried, it gives the
# 64x64 frames closest to the reference's (mean |difference| 1.9 of 255 over three random
# episodes, against 3.4 for the whole screen without the bar; BENCHMARKS.md).
DOOM_VIEW_ROWS = 204


class FrameEnv:
  """One real environment with 64x64 frames and the controller's action format.

  CarRacing takes [steer, gas, brake]; Doom takes [a] with a in {-1 left, 0 stay, +1 right}.
  """

  def __init__(self, name: str, time_limit: int):
    if name not in configs.ENVS:
      raise ValueError(f'name: unknown env {name!r}; use one of {", ".join(configs.ENVS)}')
    import gymnasium as gym
    self.name = name
    self.time_limit = time_limit
    if name == 'doom_take_cover':
      from vizdoom import gymnasium_wrapper  # noqa: F401 (registers the Vizdoom ids)
      self._env = gym.make(configs.ENVS[name])
      game = self._env.unwrapped.game
      game.close()                    # the status bar changes the view's shape, as the reference's
      game.set_render_hud(True)
      game.init()
      buttons = [str(b).split('.')[-1] for b in self._env.unwrapped.game.get_available_buttons()]
      index = {tuple(np.asarray(m).tolist()): i
               for i, m in enumerate(self._env.unwrapped.button_map)}
      press = lambda button: tuple(int(b == button) for b in buttons)
      self._doom_actions = {-1: index[press('MOVE_LEFT')], 0: index[(0,) * len(buttons)],
                            1: index[press('MOVE_RIGHT')]}
    else:
      self._env = gym.make(configs.ENVS[name], max_episode_steps=None)
    self._steps = 0

  @property
  def action_dim(self) -> int:
    return 3 if self.name == 'car_racing' else 1

  def _frame(self, obs) -> np.ndarray:
    frame = obs['screen'][:DOOM_VIEW_ROWS] if self.name == 'doom_take_cover' else obs[:84]
    return np.asarray(Image.fromarray(frame).resize(FRAME_SHAPE[:2], Image.BILINEAR))

  def reset(self, seed: int) -> np.ndarray:
    self._steps = 0
    obs, _ = self._env.reset(seed=int(seed))
    return self._frame(obs)

  def step(self, action):
    """-> (frame [64, 64, 3] uint8, reward, terminated, truncated)."""
    action = np.asarray(action, np.float32)
    if self.name == 'doom_take_cover':
      env_action = self._doom_actions[int(np.clip(np.round(action[0]), -1, 1))]
    else:
      env_action = action
    obs, reward, terminated, truncated, _ = self._env.step(env_action)
    self._steps += 1
    truncated = bool(truncated) or self._steps >= self.time_limit
    return self._frame(obs), float(reward), bool(terminated), truncated and not terminated

  def close(self):
    self._env.close()


def _worker(pipe, name, time_limit):
  env = FrameEnv(name, time_limit)
  try:
    while True:
      command, argument = pipe.recv()
      if command == 'reset':
        pipe.send(env.reset(argument))
      elif command == 'step':
        pipe.send(env.step(argument))
      else:
        break
  except (EOFError, KeyboardInterrupt):
    pass
  finally:
    env.close()
    pipe.close()


class EnvPool:
  """N `FrameEnv`s, in worker processes (`parallel='process'`) or in this process ('none')."""

  def __init__(self, name: str, num: int, time_limit: int, parallel: str = 'process'):
    if num < 1:
      raise ValueError(f'num: need at least one environment, got {num}')
    if parallel not in ('process', 'none'):
      raise ValueError(f"parallel: use 'process' or 'none', got {parallel!r}")
    self.num = num
    self.action_dim = 3 if name == 'car_racing' else 1
    self._local, self._pipes, self._processes = [], [], []
    if parallel == 'none':
      self._local = [FrameEnv(name, time_limit) for _ in range(num)]
      return
    context = multiprocessing.get_context('spawn')  # no fork after JAX has started threads
    for _ in range(num):
      parent, child = context.Pipe()
      process = context.Process(target=_worker, args=(child, name, time_limit), daemon=True)
      process.start()
      child.close()
      self._pipes.append(parent)
      self._processes.append(process)

  def reset(self, slots, seeds) -> dict:
    """Resets the given slots -> {slot: frame}."""
    if self._local:
      return {s: self._local[s].reset(seed) for s, seed in zip(slots, seeds)}
    for s, seed in zip(slots, seeds):
      self._pipes[s].send(('reset', int(seed)))
    return {s: self._pipes[s].recv() for s in slots}

  def step(self, slots, actions) -> dict:
    """Steps the given slots with actions [len(slots), A] -> {slot: (frame, r, term, trunc)}."""
    if self._local:
      return {s: self._local[s].step(a) for s, a in zip(slots, actions)}
    for s, a in zip(slots, actions):
      self._pipes[s].send(('step', np.asarray(a)))
    return {s: self._pipes[s].recv() for s in slots}

  def close(self):
    for env in self._local:
      env.close()
    for pipe in self._pipes:
      try:
        pipe.send(('close', None))
      except (BrokenPipeError, OSError):
        pass
    for process in self._processes:
      process.join(timeout=5)
      if process.is_alive():
        process.terminate()
    self._local, self._pipes, self._processes = [], [], []

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


Policy = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def run_episodes(pool: EnvPool, policy: Policy, episode_params, seeds, record: bool = False,
                 on_episode: Optional[Callable[[int, dict], None]] = None):
  """Runs episodes i = 0..E-1 (with `episode_params[i]` and env seed `seeds[i]`) on the pool.

  policy(frames [N, 64, 64, 3] uint8, is_first [N] bool, params_index [N] int) -> actions [N, A]
  for all N slots at once (idle slots repeat their last frame; their actions are ignored).
  Returns (returns [E], lengths [E]); with `record`, `on_episode(i, episode_dict)` gets each
  finished episode in the on-disk layout above.
  """
  episode_params = np.asarray(episode_params, np.int64)
  num_episodes = len(episode_params)
  if len(seeds) != num_episodes:
    raise ValueError(f'seeds: need one per episode ({num_episodes}), got {len(seeds)}')
  returns = np.zeros(num_episodes, np.float64)
  lengths = np.zeros(num_episodes, np.int64)
  frames = np.zeros((pool.num,) + FRAME_SHAPE, np.uint8)
  is_first = np.zeros(pool.num, bool)
  slot_episode = np.full(pool.num, -1)
  buffers = [None] * pool.num
  next_episode = 0

  def start(slots):
    nonlocal next_episode
    chosen = []
    for slot in slots:
      if next_episode < num_episodes:
        slot_episode[slot] = next_episode
        chosen.append(slot)
        next_episode += 1
      else:
        slot_episode[slot] = -1
    for slot, frame in pool.reset(chosen, [seeds[slot_episode[s]] for s in chosen]).items():
      frames[slot], is_first[slot] = frame, True
      if record:
        buffers[slot] = {'obs': [frame], 'action': [], 'reward': [], 'done': []}

  start(range(pool.num))
  while np.any(slot_episode >= 0):
    active = np.flatnonzero(slot_episode >= 0)
    params_index = episode_params[np.maximum(slot_episode, 0)]
    actions = np.asarray(policy(frames, is_first, params_index), np.float32)
    is_first[:] = False
    finished = []
    for slot, (frame, reward, terminated, truncated) in pool.step(active, actions[active]).items():
      episode = slot_episode[slot]
      returns[episode] += reward
      lengths[episode] += 1
      frames[slot] = frame
      if record:
        for key, value in (('action', actions[slot]), ('reward', reward), ('done', terminated)):
          buffers[slot][key].append(value)
        if not (terminated or truncated):
          buffers[slot]['obs'].append(frame)   # the frame the next action will see
      if terminated or truncated:
        finished.append(slot)
        if record and on_episode is not None:
          on_episode(int(episode), {
              'obs': np.stack(buffers[slot]['obs']).astype(np.uint8),
              'action': np.stack(buffers[slot]['action']).astype(np.float32),
              'reward': np.asarray(buffers[slot]['reward'], np.float32),
              'done': np.asarray(buffers[slot]['done'], bool)})
    if finished:
      start(finished)
  return returns, lengths


class RandomPolicy:
  """The data-collection policy: a uniformly random action held for 1..`hold` steps.

  CarRacing: steer U(-1, 1), gas U(0, 1), brake 0 (or U(0, 1) one time in five, so the car still
  moves); Doom: left, stay or right.
  """

  def __init__(self, name: str, num: int, hold: int, seed: int):
    self.name, self.hold = name, max(1, hold)
    self.rng = np.random.default_rng(seed)
    self.action = np.zeros((num, 3 if name == 'car_racing' else 1), np.float32)
    self.left = np.zeros(num, np.int64)

  def __call__(self, frames, is_first, params_index):
    del frames, params_index
    renew = (self.left <= 0) | is_first
    for slot in np.flatnonzero(renew):
      if self.name == 'car_racing':
        brake = self.rng.uniform(0, 1) if self.rng.uniform() < 0.2 else 0.0
        self.action[slot] = (self.rng.uniform(-1, 1), self.rng.uniform(0, 1), brake)
      else:
        self.action[slot] = (float(self.rng.integers(-1, 2)),)
      self.left[slot] = self.rng.integers(1, self.hold + 1)
    self.left -= 1
    return self.action.copy()


def episode_path(directory: str, episode: int) -> str:
  return os.path.join(directory, f'{episode:06d}.npz')


def save_episode(directory: str, episode: int, data: dict) -> None:
  """Writes one episode atomically (a killed run never leaves a half-written file)."""
  os.makedirs(directory, exist_ok=True)
  path = episode_path(directory, episode)
  temporary = path[:-4] + '.tmp.npz'
  np.savez_compressed(temporary, **data)
  os.replace(temporary, path)


def list_episodes(directory: str) -> list:
  """Sorted paths of the complete episode files in `directory` ([] if none)."""
  if not os.path.isdir(directory):
    return []
  names = [n for n in os.listdir(directory) if n.endswith('.npz') and '.tmp' not in n]
  return [os.path.join(directory, n) for n in sorted(names)]


def load_episode(path: str) -> dict:
  try:
    with np.load(path) as data:
      episode = {key: data[key] for key in ('obs', 'action', 'reward', 'done')}
  except (OSError, ValueError, KeyError) as error:
    raise ValueError(f'{path}: unreadable rollout ({error}); delete it and rerun the collect '
                     'stage') from error
  if len(episode['obs']) == len(episode['action']) + 1:   # the earlier layout
    episode['obs'] = episode['obs'][:-1]
  return episode

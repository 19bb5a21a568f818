"""Offline data for Dreamer 4: any replay directory the suite writes (`common/replay/host.py`).

Dreamer 4 learns from a fixed dataset (Sec. 3, "offline"); here that is the chunk files of a
previous run's replay. Each stream's chunks are joined in order, so a step keeps its place:
`action[t]` is the action taken at frame t and `reward[t]` the reward received on arriving at
frame t (DreamerV3's step layout). Windows of T steps are drawn uniformly over each stream and
may cross episode starts; `episode` ids let attention stop there (`transformer.time_mask`).

Only a share of the episodes keeps its actions (`labelled`), as the paper trains the world
model on mostly unlabelled video (Sec. 3.2); which ones is fixed by the seed.
"""
import os
import re

import numpy as np

_NAME = re.compile(r'^(\d{10})-s(\d{4})-n(\d{6})\.npz$')


def frame_shape(name: str, vector_size: int) -> tuple:
  """The [H, W, C] image a `vector` observation is: gymnax MinAtar grids are 10 x 10 x C."""
  if name.startswith('gymnax_') and name.endswith('-MinAtar'):
    if vector_size % 100:
      raise ValueError(f'{name}: a MinAtar vector of {vector_size} values is not 10 x 10 x C.')
    return (10, 10, vector_size // 100)
  raise ValueError(f'{name}: Dreamer 4 tokenises images; this env gives a vector of '
                   f'{vector_size} values and no known image shape (use an image env or MinAtar).')


def to_frames(steps: dict, env_name: str) -> np.ndarray:
  """float32 frames [..., H, W, C] in [0, 1] from `image` (uint8) or a MinAtar `vector`."""
  if 'image' in steps:
    return steps['image'].astype(np.float32) / 255.0
  vector = steps['vector']
  shape = frame_shape(env_name, vector.shape[-1])
  return vector.reshape(vector.shape[:-1] + shape).astype(np.float32)


def read_streams(directory: str) -> list:
  """Every stream of a replay directory as one dict of arrays [N, ...], chunks in order."""
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'offline data: {directory!r} is not a directory; pass a run\'s '
                            'replay/ folder (run.offline_replay).')
  chunks = {}
  for name in sorted(os.listdir(directory)):
    match = _NAME.match(name)
    if match:
      with np.load(os.path.join(directory, name)) as file:
        chunks.setdefault(int(match.group(2)), []).append({k: file[k] for k in file.files})
  if not chunks:
    raise FileNotFoundError(f'offline data: no replay chunks (*.npz) in {directory!r}.')
  return [{key: np.concatenate([c[key] for c in parts]) for key in parts[0]}
          for _, parts in sorted(chunks.items())]


def episode_returns(stream: dict) -> list:
  """(end index, return) of the complete episodes (is_first ... is_last) of one stream."""
  returns, total, open_ = [], 0.0, False
  for index, (reward, first, last) in enumerate(
      zip(stream['reward'], stream['is_first'], stream['is_last'])):
    if first:
      total, open_ = 0.0, True
    else:
      total += float(reward)
    if last and open_:
      returns.append((index, total))
      open_ = False
  return returns


class Dataset:
  """Windows [B, T] of frames, actions, rewards and episode ids from a replay directory."""

  def __init__(self, directory: str, env_name: str, labelled: float = 1.0, seed: int = 0):
    streams = read_streams(directory)
    # In the order the episodes ended (streams step together), so quarters are early and late.
    self.returns = [r for _, r in sorted(e for s in streams for e in episode_returns(s))]
    rng = np.random.default_rng(seed)
    self.frames, self.action, self.reward, self.terminal, self.first = [], [], [], [], []
    self.episode, self.has_action = [], []
    offset = 0
    for stream in streams:
      episode = np.cumsum(stream['is_first'].astype(np.int64)) + offset
      offset = int(episode[-1]) + 1
      keep = rng.random(offset) < labelled
      self.frames.append(to_frames(stream, env_name))
      self.action.append(stream['action'])
      self.reward.append(stream['reward'].astype(np.float32))
      self.terminal.append(stream['is_terminal'].astype(bool))
      self.first.append(stream['is_first'].astype(bool))
      self.episode.append(episode)
      self.has_action.append(keep[episode])
    self.rng = np.random.default_rng(seed + 1)

  @property
  def steps(self) -> int:
    return sum(len(x) for x in self.reward)

  def sample(self, batch: int, length: int, rng=None) -> dict:
    """A batch of windows, uniform over all start positions of all streams."""
    rng = self.rng if rng is None else rng
    sizes = np.array([max(len(r) - length + 1, 0) for r in self.reward])
    if not sizes.sum():
      raise ValueError(f'offline data: no stream holds {length} steps; use a shorter window.')
    picks = rng.choice(len(sizes), batch, p=sizes / sizes.sum())
    starts = [rng.integers(sizes[s]) for s in picks]
    take = lambda arrays: np.stack([arrays[s][i:i + length] for s, i in zip(picks, starts)])
    return {'frames': take(self.frames), 'action': take(self.action),
            'reward': take(self.reward), 'is_terminal': take(self.terminal),
            'is_first': take(self.first), 'episode': take(self.episode),
            'has_action': take(self.has_action)}

  def stats(self) -> dict:
    returns = np.array(self.returns or [np.nan])
    quarter = max(len(returns) // 4, 1)
    return {'steps': self.steps, 'episodes': len(self.returns),
            'return_mean': float(returns.mean()), 'return_std': float(returns.std()),
            'return_first_quarter': float(returns[:quarter].mean()),
            'return_last_quarter': float(returns[-quarter:].mean()),
            'return_max': float(returns.max())}

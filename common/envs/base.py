"""The `Env` interface shared by every adapter, and small helpers they reuse.

An `Env` (DreamerV3's embodied env API):
  obs_space: dict[str, Space]   every key `step` returns, including `reward`,
                                `is_first`, `is_last`, `is_terminal`.
  act_space: Space              discrete int32 [] or float32 [A] in [-1, 1].
  step(action) -> dict          the first call and the call after `is_last` reset
                                the env and ignore `action` (is_first=True, reward 0).
  close()

Keys starting with `log/` are for logging only (e.g. Crafter achievements);
agents must not feed them to their networks.
"""
import numpy as np
from PIL import Image

from common.envs.spaces import Space, check_action

STEP_KEYS = ('reward', 'is_first', 'is_last', 'is_terminal')


def step_spaces() -> dict:
  return {
      'reward': Space(np.float32, (), -np.inf, np.inf),
      'is_first': Space(bool, ()),
      'is_last': Space(bool, ()),
      'is_terminal': Space(bool, ()),
  }


def image_space(height: int, width: int, channels: int) -> Space:
  return Space(np.uint8, (height, width, channels), 0, 255)


def transition(obs: dict, reward=0.0, is_first=False, is_last=False, is_terminal=False) -> dict:
  """Adds the step keys with the contract's dtypes."""
  obs = dict(obs)
  obs['reward'] = np.float32(reward)
  obs['is_first'] = np.bool_(is_first)
  obs['is_last'] = np.bool_(is_last)
  obs['is_terminal'] = np.bool_(is_terminal)
  return obs


def resize(image: np.ndarray, size) -> np.ndarray:
  """Resizes uint8 [H, W, C] to `size` = (height, width) (bilinear, as DreamerV3)."""
  height, width = size
  if image.shape[:2] == (height, width):
    return image
  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out[..., None] if channels == 1 else out


class Env:
  """Base class: subclasses set `obs_space`, `act_space` and implement `_reset()` and
  `_step(action) -> obs dict` (with the step keys); the base does the auto-reset,
  the action check and an optional agent-step time limit (cut, not terminal)."""

  obs_space: dict
  act_space: Space

  def __init__(self, time_limit: int = 0):
    self._time_limit = time_limit
    self._done = True
    self._steps = 0

  def step(self, action) -> dict:
    if self._done:
      self._done = False
      self._steps = 0
      obs = self._reset()
    else:
      action = check_action(self.act_space, action)
      obs = self._step(action)
      self._steps += 1
      if self._time_limit and self._steps >= self._time_limit:
        obs['is_last'] = np.bool_(True)
    self._done = bool(obs['is_last'])
    return obs

  def _reset(self) -> dict:
    raise NotImplementedError

  def _step(self, action) -> dict:
    raise NotImplementedError

  def close(self):
    pass

  def __repr__(self):
    return f'{type(self).__name__}(obs_space={self.obs_space}, act_space={self.act_space})'

"""Atari 2600 through ale-py (ROMs ship with the package), DreamerV3's settings.

`atari_<game>` (Hafner et al. 2023, DreamerV3, App. "Atari"): action repeat 4
with max-pooling of the last two frames, sticky actions 0.25, no no-ops at reset
(the reference configuration behind the published curves, danijar/dreamerv3
2411f7d; its newer code draws up to 30), full action set (18), grayscale 96x96,
108k-frame (30 min) limit. `atari100k_<game>` (Kaiser et al. 2020 as DreamerV3's
2411f7d config runs it): 64x64 RGB, no sticky actions, full action set. These
values come from `suite_defaults` in `common/envs/__init__.py`; this adapter
honours whatever EnvConfig says (`noops`: up to N no-ops at reset, `actions`
'needed' for the minimal set, as DreamerV2 uses).

Observations: `image` uint8 [H, W, 1 or 3]. Actions: int32 index [].
The ALE time limit ends the episode as cut (is_last, not is_terminal).
"""
import numpy as np

from common.envs.base import Env, image_space, resize, step_spaces, transition
from common.envs.config import EnvConfig
from common.envs.spaces import Space

MAX_FRAMES = 108_000  # 30 minutes at 60 Hz, the standard evaluation limit.


def games() -> list:
  from ale_py import roms
  return sorted(roms.get_all_rom_ids())


class Atari(Env):

  def __init__(self, game: str, config: EnvConfig, seed: int = 0):
    import ale_py
    from ale_py import roms
    if game not in roms.get_all_rom_ids():
      raise ValueError(f"Unknown Atari game '{game}'; use a snake_case ROM id of ale-py, "
                       f"one of: {', '.join(games())}.")
    if config.actions not in ('all', 'needed'):
      raise ValueError(f"EnvConfig.actions = '{config.actions}' must be 'all' or 'needed'.")
    if config.lives not in ('unused', 'discount', 'reset'):
      raise ValueError(f"EnvConfig.lives = '{config.lives}' must be 'unused', 'discount' or 'reset'.")
    if config.action_repeat < 1:
      raise ValueError(f'EnvConfig.action_repeat = {config.action_repeat} must be >= 1.')
    super().__init__(config.time_limit)
    self._config = config
    self._rng = np.random.default_rng(seed)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    self._ale = ale_py.ALEInterface()
    self._ale.setInt('random_seed', int(seed) % (2 ** 31))
    self._ale.setFloat('repeat_action_probability', 0.25 if config.sticky else 0.0)
    self._ale.setInt('max_num_frames_per_episode', MAX_FRAMES)
    self._ale.loadROM(roms.get_rom_path(game))
    if config.actions == 'all':
      self._actions = list(self._ale.getLegalActionSet())
    else:
      self._actions = list(self._ale.getMinimalActionSet())
    self._noop = self._actions.index(ale_py.Action.NOOP) if ale_py.Action.NOOP in self._actions else 0
    height, width = config.size
    self.obs_space = {'image': image_space(height, width, 1 if config.gray else 3), **step_spaces()}
    self.act_space = Space(np.int32, (), 0, len(self._actions) - 1)
    self._buffers = [None, None]
    self._lives = 0

  def _screen(self):
    return self._ale.getScreenGrayscale()[..., None] if self._config.gray else self._ale.getScreenRGB()

  def _image(self):
    # Max over the last two frames removes the flicker of sprites drawn every other frame.
    image = self._buffers[0] if self._buffers[1] is None else np.maximum(*self._buffers)
    return resize(image, self._config.size)

  def _reset(self):
    if self._ale.game_over() or self._config.lives != 'reset':
      self._ale.reset_game()
      for _ in range(self._rng.integers(0, self._config.noops + 1)):
        self._ale.act(self._actions[self._noop])
        if self._ale.game_over():
          self._ale.reset_game()
    self._lives = self._ale.lives()
    self._buffers = [self._screen(), None]
    return transition({'image': self._image()}, is_first=True)

  def _step(self, action):
    ale_action = self._actions[int(action)]
    repeat = self._config.action_repeat
    reward = 0.0
    self._buffers = [None, None]
    for index in range(repeat):
      reward += self._ale.act(ale_action)
      if index >= repeat - 2:
        self._buffers[index - (repeat - 2) if repeat > 1 else 0] = self._screen()
      if self._ale.game_over():
        break
    if self._buffers[0] is None:  # The game ended before the second-to-last frame.
      self._buffers = [self._screen(), None]
    elif self._buffers[1] is None and repeat > 1:
      self._buffers[1] = self._screen()
    truncated = self._ale.game_truncated()
    over = self._ale.game_over() and not truncated
    lives = self._ale.lives()
    life_lost = lives < self._lives
    self._lives = lives
    is_terminal = over
    is_last = over or truncated
    if self._config.lives == 'discount' and life_lost:
      is_terminal = True  # Discount zero at a life loss; the episode goes on.
    elif self._config.lives == 'reset' and life_lost:
      is_terminal = is_last = True
    return transition({'image': self._image()}, reward, is_last=is_last, is_terminal=is_terminal)

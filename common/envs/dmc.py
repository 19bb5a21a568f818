"""DeepMind Control Suite (dm_control), as PlaNet and Dreamer use it.

`dmc_<domain>_<task>`, e.g. `dmc_walker_walk`, `dmc_cartpole_swingup`,
`dmc_cup_catch` (`cup` is `ball_in_cup`). Observations:
  `image`   uint8 [H, W, 3] (EnvConfig.pixels), rendered from the papers' camera
            per domain (quadruped: 2, else 0) unless EnvConfig.camera >= 0;
  one float32 vector key per entry of the task's observation (EnvConfig.proprio),
            flattened to [k] with k >= 1 (DreamerV3's convention; e.g. cartpole:
            `position` [3], `velocity` [2]). Agents concatenate the vector keys.
Actions: float32 [A] in [-1, 1], rescaled linearly to the task's action bounds,
repeated `action_repeat` times with rewards summed (PlaNet/Dreamer use 2).
Episodes (1000 simulator steps) end by time limit: is_last, not is_terminal.

Rendering is headless: MUJOCO_GL defaults to `egl` (Mesa's software renderer
works on CPU-only machines; `osmesa` works too). Multisampling is off and
shadows stay on: at 64x64 multisampling changes ~3% of pixels (edge
anti-aliasing only) for a ~1.3x faster render, while turning shadows off
changes ~28% of pixels of walker/quadruped (the ground shadow is a height cue)
for ~2.5x; see the figures in the envs report / BENCHMARKS.md.
"""
import os
import types

os.environ.setdefault('MUJOCO_GL', 'egl')
if os.environ['MUJOCO_GL'] == 'egl':
  os.environ.setdefault('PYOPENGL_PLATFORM', 'egl')

import numpy as np  # noqa: E402

from common.envs.base import Env, image_space, step_spaces, transition  # noqa: E402
from common.envs.config import EnvConfig  # noqa: E402
from common.envs.spaces import Space  # noqa: E402

DOMAIN_ALIASES = {'cup': 'ball_in_cup', 'pointmass': 'point_mass'}
# PlaNet / Dreamer camera per domain; every other domain uses camera 0.
CAMERAS = {'quadruped': 2}


def tasks() -> list:
  from dm_control import suite
  return sorted(f'{domain}_{task}' for domain, task in suite.ALL_TASKS)


def split_task(task: str):
  """'walker_walk' -> ('walker', 'walk'); domains with underscores are matched first."""
  from dm_control import suite
  for domain in sorted(suite._DOMAINS, key=len, reverse=True):  # pylint: disable=protected-access
    if task.startswith(domain + '_'):
      return domain, task[len(domain) + 1:]
  for alias, domain in DOMAIN_ALIASES.items():
    if task.startswith(alias + '_'):
      return domain, task[len(alias) + 1:]
  raise ValueError(f"Unknown DMC task '{task}'; use dmc_<domain>_<task>, one of: "
                   f"{', '.join(tasks())} (and cup_catch).")


class DMC(Env):

  def __init__(self, task: str, config: EnvConfig, seed: int = 0):
    from dm_control import suite
    domain, task_name = split_task(task)
    if (domain, task_name) not in suite.ALL_TASKS:
      raise ValueError(f"Unknown DMC task '{task}'; one of: {', '.join(tasks())}.")
    if not (config.pixels or config.proprio):
      raise ValueError('EnvConfig: DMC needs pixels=True and/or proprio=True.')
    if config.action_repeat < 1:
      raise ValueError(f'EnvConfig.action_repeat = {config.action_repeat} must be >= 1.')
    super().__init__(config.time_limit)
    self._config = config
    self._env = suite.load(domain, task_name, task_kwargs={'random': int(seed) % (2 ** 31)})
    self._camera = config.camera if config.camera >= 0 else CAMERAS.get(domain, 0)
    # Before the first render creates the GL context: no multisample buffer.
    self._env.physics.model.vis.quality.offsamples = 0
    spec = self._env.action_spec()
    self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
    self.act_space = Space(np.float32, spec.shape, -1.0, 1.0)
    self.obs_space = {}
    if config.pixels:
      self.obs_space['image'] = image_space(*config.size, 3)
    if config.proprio:
      for key, value in self._env.observation_spec().items():
        size = int(np.prod(value.shape)) if value.shape else 1
        self.obs_space[key] = Space(np.float32, (size,), -np.inf, np.inf)
    self.obs_space.update(step_spaces())

  def _obs(self, time_step):
    obs = {}
    if self._config.pixels:
      height, width = self._config.size
      obs['image'] = self._env.physics.render(height, width, camera_id=self._camera)
    if self._config.proprio:
      for key, value in time_step.observation.items():
        obs[key] = np.asarray(value, np.float32).reshape(-1)
    return obs

  def _reset(self):
    return transition(self._obs(self._env.reset()), is_first=True)

  def _step(self, action):
    action = self._low + (action.astype(np.float64) + 1.0) / 2.0 * (self._high - self._low)
    reward = 0.0
    for _ in range(self._config.action_repeat):
      time_step = self._env.step(action)
      reward += time_step.reward or 0.0
      if time_step.last():
        break
    is_last = time_step.last()
    is_terminal = is_last and time_step.discount == 0
    return transition(self._obs(time_step), reward, is_last=is_last, is_terminal=is_terminal)

  # -- simulator state (goal-reaching evaluation, experiments/goal_reaching.py) -----------

  def physics_state(self) -> np.ndarray:
    return self._env.physics.get_state().copy()

  def joint_positions(self) -> np.ndarray:
    return self._env.physics.data.qpos.copy()

  def joint_distance(self, a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two `joint_positions()`, in the simulator's units."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))

  def restore(self, state: np.ndarray) -> dict:
    """Puts the simulator in `state` (a `physics_state()` of this episode: the task's own
    randomisation, e.g. reacher's target, is not part of it) and returns its observation as
    an episode's first step."""
    with self._env.physics.reset_context():
      self._env.physics.set_state(state)
    self._done, self._steps = False, 0
    observation = self._env.task.get_observation(self._env.physics)
    return transition(self._obs(types.SimpleNamespace(observation=observation)), is_first=True)

  def close(self):
    self._env.close()

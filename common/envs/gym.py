"""Any registered gymnasium environment: `gym_<id>`, e.g. `gym_CartPole-v1`.

Observations: a Box of rank 3 with uint8 values becomes `image` (resized to
EnvConfig.size); any other Box becomes float32 `vector` [k] (flattened); a
Dict observation gives one key per entry by the same rules. With
EnvConfig.pixels=True and a non-image observation, `image` is rendered
(render_mode='rgb_array') and resized; EnvConfig.proprio=False drops vectors.
Actions: Discrete(n) -> int32 [] in [0, n); Box -> float32 [A] in [-1, 1],
rescaled linearly to the Box bounds (unbounded dims are passed unscaled).
`terminated` is terminal; `truncated` (e.g. TimeLimit) is a cut. EnvConfig.action_repeat
repeats actions with rewards summed.

Bring your own env: register it with `gymnasium.register(id='MyEnv-v0',
entry_point=...)` in a module, say `my_package.my_env`, and use
`gym_my_package.my_env:MyEnv-v0`: each env worker imports the module before making the env.
"""
import importlib

import numpy as np

from common.envs.base import Env, image_space, resize, step_spaces, transition
from common.envs.config import EnvConfig
from common.envs.spaces import Space


def resolve_id(env_id: str) -> str:
  """The gymnasium id of `env_id`; for `module:Id`, imports the module first.

  Importing registers the env in this process, which matters because envs are built
  inside worker processes that never ran the user's script.
  """
  if ':' not in env_id:
    return env_id
  module, env_id = env_id.split(':', 1)
  try:
    importlib.import_module(module)
  except ImportError as error:
    raise ValueError(f"gym_{module}:{env_id}: cannot import module '{module}' ({error}); "
                     "is it on PYTHONPATH?") from None
  return env_id


def _is_image(space) -> bool:
  import gymnasium
  return (isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 3
          and space.dtype == np.uint8)


class Gym(Env):

  def __init__(self, env_id: str, config: EnvConfig, seed: int = 0, env=None):
    import gymnasium
    if config.action_repeat < 1:
      raise ValueError(f'EnvConfig.action_repeat = {config.action_repeat} must be >= 1.')
    super().__init__(config.time_limit)
    self._config = config
    self._seed = int(seed)
    if env is None:
      env_id = resolve_id(env_id)
      if env_id not in gymnasium.registry:
        raise ValueError(f"Unknown gymnasium id '{env_id}' (name gym_{env_id}); register it "
                         "with gymnasium.register or pick one of gymnasium.registry.keys().")
      kwargs = {}
      if config.pixels:
        kwargs['render_mode'] = 'rgb_array'
      env = gymnasium.make(env_id, **kwargs)
    self._env = env
    space = env.observation_space
    entries = dict(space.spaces) if isinstance(space, gymnasium.spaces.Dict) else {None: space}
    self._image_key = None
    self._has_image = False
    self._vector_keys = []
    self.obs_space = {}
    for key, entry in entries.items():
      if _is_image(entry):
        if self._has_image or entry.shape[-1] not in (1, 3):
          raise ValueError(f"gym_{env_id}: observation entry '{key}' is a second image or has "
                           f'{entry.shape[-1]} channels; only one [H, W, 1|3] image is supported.')
        self._image_key, self._has_image = key, True
        self.obs_space['image'] = image_space(*config.size, entry.shape[-1])
      elif isinstance(entry, gymnasium.spaces.Box):
        if config.proprio:
          name = 'vector' if key is None else key
          self._vector_keys.append((key, name))
          self.obs_space[name] = Space(np.float32, (int(np.prod(entry.shape)),), -np.inf, np.inf)
      elif isinstance(entry, gymnasium.spaces.Discrete):
        if config.proprio:  # One-hot, so that the agent sees a categorical input.
          name = 'vector' if key is None else key
          self._vector_keys.append((key, name))
          self.obs_space[name] = Space(np.float32, (int(entry.n),), 0.0, 1.0)
      else:
        raise ValueError(f'gym_{env_id}: unsupported observation space {entry!r} '
                         f"(entry '{key}'); use Box, Discrete or a Dict of them.")
    self._render = config.pixels and not self._has_image
    if self._render:
      self.obs_space['image'] = image_space(*config.size, 3)
    if not self.obs_space:
      raise ValueError(f'gym_{env_id}: no observation left; set EnvConfig.pixels or proprio.')
    self.obs_space.update(step_spaces())
    action = env.action_space
    if isinstance(action, gymnasium.spaces.Discrete):
      self._discrete, self._action_start = True, int(action.start)
      self.act_space = Space(np.int32, (), 0, int(action.n) - 1)
    elif isinstance(action, gymnasium.spaces.Box):
      self._discrete = False
      self._low = action.low.astype(np.float64)
      self._high = action.high.astype(np.float64)
      self._bounded = np.isfinite(self._low) & np.isfinite(self._high)
      self._action_dtype = action.dtype
      self.act_space = Space(np.float32, action.shape, -1.0, 1.0)
    else:
      raise ValueError(f'gym_{env_id}: unsupported action space {action!r}; use Discrete or Box.')

  def _obs(self, raw):
    import gymnasium
    obs = {}
    entries = raw if isinstance(raw, dict) else {None: raw}
    if self._has_image:
      obs['image'] = resize(np.asarray(entries[self._image_key], np.uint8), self._config.size)
    for key, name in self._vector_keys:
      space = (self._env.observation_space if key is None else self._env.observation_space[key])
      value = entries[key]
      if isinstance(space, gymnasium.spaces.Discrete):
        vector = np.zeros(space.n, np.float32)
        vector[int(value) - int(space.start)] = 1.0
        obs[name] = vector
      else:
        obs[name] = np.asarray(value, np.float32).reshape(-1)
    if self._render:
      obs['image'] = resize(np.asarray(self._env.render(), np.uint8)[..., :3], self._config.size)
    return obs

  def _reset(self):
    raw, _ = self._env.reset(seed=self._seed)
    self._seed = None  # Seed the first reset only; later resets continue the RNG stream.
    return transition(self._obs(raw), is_first=True)

  def _step(self, action):
    if self._discrete:
      action = int(action) + self._action_start
    else:
      scaled = self._low + (action.astype(np.float64) + 1.0) / 2.0 * (self._high - self._low)
      action = np.where(self._bounded, scaled, action).astype(self._action_dtype)
    reward = 0.0
    for _ in range(self._config.action_repeat):
      raw, step_reward, terminated, truncated, _ = self._env.step(action)
      reward += float(step_reward)
      if terminated or truncated:
        break
    return transition(self._obs(raw), reward, is_last=terminated or truncated,
                      is_terminal=terminated)

  # -- simulator state (goal-reaching evaluation, experiments/goal_reaching.py) -----------
  # Classic-control envs keep their state in `unwrapped.state`; gymnasium's MuJoCo envs in
  # `data.qpos` / `data.qvel`. Joint positions are defined where the state says what they are.

  def _mujoco(self) -> bool:
    return hasattr(self._env.unwrapped, 'set_state') and hasattr(self._env.unwrapped, 'data')

  def _pendulum(self) -> bool:   # state = (angle, angular velocity)
    return type(self._env.unwrapped).__name__ == 'PendulumEnv'

  def physics_state(self) -> np.ndarray:
    unwrapped = self._env.unwrapped
    if self._mujoco():
      return np.concatenate([unwrapped.data.qpos, unwrapped.data.qvel]).copy()
    if getattr(unwrapped, 'state', None) is None:
      raise ValueError(f'{type(unwrapped).__name__}: no simulator state to record (classic '
                       'control and MuJoCo envs have one).')
    return np.array(unwrapped.state, np.float64)

  def joint_positions(self) -> np.ndarray:
    unwrapped = self._env.unwrapped
    if self._mujoco():
      return unwrapped.data.qpos.copy()
    if self._pendulum():
      return np.array(unwrapped.state[:1], np.float64)
    raise ValueError(f'{type(unwrapped).__name__}: joint positions are defined for Pendulum '
                     'and the MuJoCo envs.')

  def joint_distance(self, a: np.ndarray, b: np.ndarray) -> float:
    """Distance between two `joint_positions()`; Pendulum's angle wraps around."""
    difference = np.asarray(a) - np.asarray(b)
    if self._pendulum():
      difference = (difference + np.pi) % (2 * np.pi) - np.pi
    return float(np.linalg.norm(difference))

  def restore(self, state: np.ndarray) -> dict:
    """Puts the simulator in `state` (a `physics_state()`) and returns its observation as an
    episode's first step."""
    unwrapped = self._env.unwrapped
    if self._mujoco():
      qpos = state[:unwrapped.model.nq]
      unwrapped.set_state(qpos, state[unwrapped.model.nq:])
    else:
      unwrapped.state = np.array(state, np.float64)
    raw = unwrapped._get_obs() if hasattr(unwrapped, '_get_obs') else np.array(state)  # pylint: disable=protected-access
    self._done, self._steps = False, 0
    return transition(self._obs(raw), is_first=True)

  def close(self):
    self._env.close()

"""Craftax (Matthews et al. 2024), the JAX-native Crafter: `craftax_classic`, `craftax`.

A `JaxEnv` (`common/envs/jax_env.py`): N worlds vmapped in one jitted step, on the
host's JAX device under the Python loop (`make_batch` returns a `JaxBatch` of it, no
worker processes) or inside the compiled program of `--loop device`.
Observations: with EnvConfig.pixels (default) `image` uint8 [64, 64, 3], the
package's pixel variant (classic 63x63, full 130x110 incl. the inventory rows)
resized bilinearly to EnvConfig.size (the full game's aspect ratio is squashed);
with pixels=False its symbolic float32 `vector` instead. Logging keys:
`log/achievement_<name>` int32 0/1 (unlocked this episode).
Actions: int32 [] (17 classic, 43 full).

Resets happen only where an episode ended (the package's auto_reset variant
regenerates a world every step, ~20x slower): one `lax.cond` per step skips
world generation unless some env needs it (`JaxEnv.expensive_reset`). Death (and, in the full game,
beating the final boss) is terminal; the step limit (EnvConfig.time_limit or
the package's 10000) is a cut (is_last, not is_terminal).
"""
import numpy as np

from common.envs.base import image_space, step_spaces
from common.envs.config import EnvConfig
from common.envs.jax_env import JaxEnv
from common.envs.spaces import Space

TASKS = ('classic', 'full')


class CraftaxEnv(JaxEnv):
  """Craftax (classic or full) as a `JaxEnv`."""

  expensive_reset = True

  def __init__(self, task: str, config: EnvConfig):
    import jax
    import jax.numpy as jnp
    from craftax.craftax_env import make_craftax_env_from_params
    if task not in TASKS:
      raise ValueError(f"Unknown Craftax task '{task}'; use craftax_classic or craftax.")
    classic = task == 'classic'
    if classic:
      from craftax.craftax_classic.constants import Achievement
    else:
      from craftax.craftax.constants import Achievement
    env = make_craftax_env_from_params(classic=classic, symbolic=not config.pixels,
                                       auto_reset=False)
    params = env.default_params
    if config.time_limit:
      params = params.replace(max_timesteps=int(config.time_limit))
    self._env, self._params = env, params
    names = [a.name.lower() for a in sorted(Achievement, key=lambda a: a.value)]
    size = tuple(config.size)
    pixels = config.pixels
    raw_shape = env.observation_space(params).shape

    def convert(raw_obs, state):
      if pixels:
        image = jax.image.resize(raw_obs, size + (3,), 'linear', antialias=True)
        obs = {'image': jnp.round(jnp.clip(image, 0.0, 1.0) * 255).astype(jnp.uint8)}
      else:
        obs = {'vector': raw_obs.reshape(-1).astype(jnp.float32)}
      achievements = state.achievements.astype(jnp.int32)
      obs.update({f'log/achievement_{name}': achievements[index]
                  for index, name in enumerate(names)})
      return obs
    self._convert = convert
    self.obs_space = {}
    if pixels:
      self.obs_space['image'] = image_space(*size, 3)
    else:
      self.obs_space['vector'] = Space(np.float32, (int(np.prod(raw_shape)),), -np.inf, np.inf)
    for name in names:
      self.obs_space[f'log/achievement_{name}'] = Space(np.int32, (), 0, 1)
    self.obs_space.update(step_spaces())
    self.act_space = Space(np.int32, (), 0, env.num_actions - 1)

  def reset_one(self, key):
    raw_obs, state = self._env.reset(key, self._params)
    return self._convert(raw_obs, state), state

  def step_one(self, key, state, action):
    import jax.numpy as jnp
    raw_obs, state, reward, done, _ = self._env.step(key, state, action, self._params)
    cut = state.timestep >= self._params.max_timesteps
    obs = self._convert(raw_obs, state)
    obs.update(reward=reward.astype(jnp.float32), is_last=done, is_terminal=done & ~cut)
    return obs, state


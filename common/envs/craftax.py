"""Craftax (Matthews et al. 2024), the JAX-native Crafter: `craftax_classic`, `craftax`.

Both run N worlds vmapped in one jitted step on the host's JAX device (no worker
processes): `make_batch` returns a `CraftaxBatch`, `make` a one-env view of it.
Observations: with EnvConfig.pixels (default) `image` uint8 [64, 64, 3], the
package's pixel variant (classic 63x63, full 130x110 incl. the inventory rows)
resized bilinearly to EnvConfig.size (the full game's aspect ratio is squashed);
with pixels=False its symbolic float32 `vector` instead. Logging keys:
`log/achievement_<name>` int32 0/1 (unlocked this episode).
Actions: int32 [] (17 classic, 43 full).

Resets happen only where an episode ended (the package's auto_reset variant
regenerates a world every step, ~20x slower): one `lax.cond` per step skips
world generation unless some env needs it. Death (and, in the full game,
beating the final boss) is terminal; the step limit (EnvConfig.time_limit or
the package's 10000) is a cut (is_last, not is_terminal).
"""
import numpy as np

from common.envs.base import STEP_KEYS, image_space, step_spaces
from common.envs.config import EnvConfig
from common.envs.spaces import Space, check_actions

TASKS = ('classic', 'full')


class CraftaxBatch:
  """N Craftax envs with the BatchEnv API: `step(actions [N]) -> obs dict [N, ...]`."""

  def __init__(self, task: str, config: EnvConfig, num: int = 1, seed: int = 0,
               compiler_options: dict = None):
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
    env = make_craftax_env_from_params(classic=classic, symbolic=not config.pixels, auto_reset=False)
    params = env.default_params
    if config.time_limit:
      params = params.replace(max_timesteps=int(config.time_limit))
    self.num = int(num)
    self._names = [a.name.lower() for a in sorted(Achievement, key=lambda a: a.value)]
    size = tuple(config.size)
    pixels = config.pixels
    raw_shape = env.observation_space(params).shape

    def convert(raw_obs, state):
      if pixels:
        image = jax.image.resize(raw_obs, size + (3,), 'linear', antialias=True)
        obs = {'image': jnp.round(jnp.clip(image, 0.0, 1.0) * 255).astype(jnp.uint8)}
      else:
        obs = {'vector': raw_obs.reshape(-1).astype(jnp.float32)}
      obs['achievements'] = state.achievements.astype(jnp.int32)
      return obs

    def step_one(key, state, action):
      raw_obs, state, reward, done, _ = env.step(key, state, action, params)
      cut = state.timestep >= params.max_timesteps
      obs = convert(raw_obs, state)
      obs.update(reward=reward.astype(jnp.float32), is_first=jnp.bool_(False),
                 is_last=done, is_terminal=done & ~cut)
      return obs, state

    def reset_one(key):
      raw_obs, state = env.reset(key, params)
      obs = convert(raw_obs, state)
      obs.update(reward=jnp.float32(0.0), is_first=jnp.bool_(True), is_last=jnp.bool_(False),
                 is_terminal=jnp.bool_(False))
      return obs, state

    def batch_step(states, actions, needs_reset, key):
      step_key, reset_key = jax.random.split(key)
      stepped = jax.vmap(step_one)(jax.random.split(step_key, self.num), states, actions)
      # World generation is the expensive part: only run it when some env needs it.
      reset = jax.lax.cond(needs_reset.any(),
                           lambda: jax.vmap(reset_one)(jax.random.split(reset_key, self.num)),
                           lambda: stepped)

      def select(new, old):
        mask = needs_reset.reshape((-1,) + (1,) * (new.ndim - 1))
        return jnp.where(mask, new, old)

      return jax.tree.map(select, reset, stepped)

    def initial(key):
      return jax.vmap(reset_one)(jax.random.split(key, self.num))[1]

    def strong(tree):  # Placeholders and step outputs must match exactly (no recompile).
      return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)

    def step_strong(states, actions, needs_reset, key):
      obs, states = batch_step(states, actions, needs_reset, key)
      return obs, strong(states)

    self._key = jax.random.PRNGKey(int(seed))
    # compiler_options, e.g. {'xla_backend_optimization_level': 0}, trade speed for compile time.
    self._step = jax.jit(step_strong, compiler_options=compiler_options)
    # Placeholder states (zeros, no compile); every env resets on its first step.
    shapes = jax.eval_shape(initial, self._key)
    self._states = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    self._needs_reset = np.ones(self.num, bool)
    self.obs_space = {}
    if pixels:
      self.obs_space['image'] = image_space(*size, 3)
    else:
      self.obs_space['vector'] = Space(np.float32, (int(np.prod(raw_shape)),), -np.inf, np.inf)
    for name in self._names:
      self.obs_space[f'log/achievement_{name}'] = Space(np.int32, (), 0, 1)
    self.obs_space.update(step_spaces())
    self.act_space = Space(np.int32, (), 0, env.num_actions - 1)

  def __len__(self):
    return self.num

  def step(self, actions) -> dict:
    import jax
    actions = np.asarray(actions)
    # Actions of envs about to reset are ignored (auto-reset contract).
    actions = np.where(self._needs_reset.reshape((-1,) + (1,) * (actions.ndim - 1)),
                       np.zeros_like(actions), actions) if actions.shape[:1] == (self.num,) else actions
    actions = check_actions(self.act_space, actions, self.num)
    self._key, key = jax.random.split(self._key)
    outputs, self._states = self._step(self._states, actions, self._needs_reset, key)
    outputs = jax.device_get(outputs)
    obs = {key: np.asarray(outputs[key]) for key in ('image', 'vector') if key in outputs}
    achievements = np.asarray(outputs['achievements'])
    for index, name in enumerate(self._names):
      obs[f'log/achievement_{name}'] = achievements[:, index]
    for key in STEP_KEYS:
      obs[key] = np.asarray(outputs[key])
    self._needs_reset = obs['is_last'].copy()
    return obs

  def close(self):
    pass


class Craftax:
  """One Craftax env (the `Env` API) as a view of a `CraftaxBatch` of size 1."""

  def __init__(self, task: str, config: EnvConfig, seed: int = 0):
    self._batch = CraftaxBatch(task, config, 1, seed)
    self.obs_space = self._batch.obs_space
    self.act_space = self._batch.act_space

  def step(self, action) -> dict:
    obs = self._batch.step(np.asarray(action)[None])
    return {key: value[0] for key, value in obs.items()}

  def close(self):
    self._batch.close()

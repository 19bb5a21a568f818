"""Environments written in JAX: N envs as one pure, jittable step, for both training loops.

A `JaxEnv` (Craftax, gymnax) is what `common/run/device_loop.py` compiles into its program;
`JaxBatch` wraps the same env in the BatchEnv API (`step(actions [N]) -> obs [N, ...]`),
so the Python loop (`common/run/train_loop.py`) runs it too and the two loops can be compared
on one env.

  env.obs_space, env.act_space     Spaces as `common.envs.base.Env` (log/* keys included)
  env.initial(key, num) -> state   placeholder states: every env resets at its first step
  env.step(state, actions, keys) -> (state, obs)     keys [N] (one per env), obs [N, ...]

Auto-reset as `common.envs.base.Env`: an env whose previous step was `is_last` (and every
env at its first step) resets and ignores its action (`is_first`, reward 0). Subclasses
write one env (`reset_one(key)`, `step_one(key, env_state, action)`, each returning
`(obs, env_state)`, obs with reward/is_last/is_terminal); `step` vmaps them. Where
resetting is expensive (Craftax generates a world), `expensive_reset` runs the resets only
when some env needs one (one `lax.cond` per step).
"""
import numpy as np

from common.envs.base import STEP_KEYS
from common.envs.spaces import check_actions


class JaxEnv:
  """N envs of one kind as pure functions; subclasses set the spaces and the one-env step."""

  obs_space: dict
  act_space: object
  expensive_reset = False

  def reset_one(self, key):
    raise NotImplementedError

  def step_one(self, key, env_state, action):
    raise NotImplementedError

  def initial(self, key, num):
    """Placeholder states for `num` envs (zeros shaped as a reset's); all need a reset."""
    import jax
    import jax.numpy as jnp
    shapes = jax.eval_shape(lambda k: self.reset_one(k)[1], key)
    env_states = jax.tree.map(lambda s: jnp.zeros((num,) + s.shape, s.dtype), shapes)
    return env_states, jnp.ones((num,), bool)

  def step(self, state, actions, keys):
    """Steps N envs: `(env_states, needs_reset), actions [N, ...], keys [N] -> (state, obs)`.

    One key per env, so env `i` behaves the same whatever else is batched beside it (the
    device loop flattens seeds x envs into one batch)."""
    import jax
    import jax.numpy as jnp
    env_states, needs_reset = state
    split = jax.vmap(jax.random.split)(keys)
    step_keys, reset_keys = split[:, 0], split[:, 1]

    def first(key):
      obs, env_state = self.reset_one(key)
      obs.update(reward=jnp.float32(0.0), is_first=jnp.bool_(True), is_last=jnp.bool_(False),
                 is_terminal=jnp.bool_(False))
      return obs, env_state

    def later(key, env_state, action):
      obs, env_state = self.step_one(key, env_state, action)
      obs['is_first'] = jnp.bool_(False)
      return obs, env_state

    stepped = jax.vmap(later)(step_keys, env_states, actions)
    reset_all = lambda: jax.vmap(first)(reset_keys)
    if self.expensive_reset:
      reset = jax.lax.cond(needs_reset.any(), reset_all, lambda: stepped)
    else:
      reset = reset_all()

    def select(new, old):
      mask = needs_reset.reshape((-1,) + (1,) * (new.ndim - 1))
      return jnp.where(mask, new, old).astype(old.dtype)

    obs, env_states = jax.tree.map(select, reset, stepped)
    return (env_states, obs['is_last']), obs


class JaxBatch:
  """A `JaxEnv` with the BatchEnv API for the Python loop: one jitted step of N envs."""

  def __init__(self, env: JaxEnv, num: int = 1, seed: int = 0, compiler_options: dict = None):
    import jax
    self.env = env
    self.num = int(num)
    self.obs_space = env.obs_space
    self.act_space = env.act_space
    self._key, init_key = jax.random.split(jax.random.PRNGKey(int(seed)))
    self._state = env.initial(init_key, self.num)
    self._needs_reset = np.ones(self.num, bool)
    # compiler_options, e.g. {'xla_backend_optimization_level': 0}, trade speed for compile
    # time (tests).
    self._step = jax.jit(env.step, compiler_options=compiler_options)

  def __len__(self):
    return self.num

  def step(self, actions) -> dict:
    import jax
    actions = np.asarray(actions)
    if actions.shape[:1] == (self.num,):  # actions of envs about to reset are ignored
      mask = self._needs_reset.reshape((-1,) + (1,) * (actions.ndim - 1))
      actions = np.where(mask, np.zeros_like(actions), actions)
    actions = check_actions(self.act_space, actions, self.num)
    self._key, key = jax.random.split(self._key)
    self._state, obs = self._step(self._state, actions, jax.random.split(key, self.num))
    obs = {key: np.asarray(value) for key, value in jax.device_get(obs).items()}
    self._needs_reset = obs['is_last'].copy()
    return obs

  def close(self):
    pass


class JaxSingle:
  """One env of a `JaxEnv` (the `Env` API) as a view of a `JaxBatch` of size 1."""

  def __init__(self, env: JaxEnv, seed: int = 0):
    self._batch = JaxBatch(env, 1, seed)
    self.obs_space = env.obs_space
    self.act_space = env.act_space

  def step(self, action) -> dict:
    obs = self._batch.step(np.asarray(action)[None])
    return {key: value[0] for key, value in obs.items()}

  def close(self):
    self._batch.close()


__all__ = ['JaxEnv', 'JaxBatch', 'JaxSingle', 'STEP_KEYS']

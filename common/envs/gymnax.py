"""gymnax (Lange 2022): classic control, MinAtar and bsuite written in JAX: `gymnax_<id>`.

`gymnax_CartPole-v1`, `gymnax_Breakout-MinAtar`, ... (`gymnax.registered_envs`) as a
`JaxEnv` (`common/envs/jax_env.py`): the device loop compiles them into its program, the
Python loop steps them through a `JaxBatch`.

Observations: the package's observation flattened into a float32 `vector` (MinAtar's
10x10xC grid becomes 100*C values: too small for the image encoders' downsampling).
Actions: discrete int32 []; continuous float32 [A] in [-1, 1], scaled to the env's box.
The package's auto-reset (which hides the last observation of an episode) is not used:
`step_env` and `reset_env` run under the `JaxEnv` reset contract. An episode the env
terminates is terminal; one that reaches `max_steps_in_episode` (or EnvConfig.time_limit)
first is cut (is_last, not is_terminal), as the package's own `step` tells them apart.

gymnax 1.0.1 pins jax<0.12 and gymnasium<1.4 without needing them (tested here on jax 0.12
and gymnasium 1.4), so it is installed with `pip install --no-deps` (README, `.ci/run`).
"""
import numpy as np

from common.envs.base import step_spaces
from common.envs.config import EnvConfig
from common.envs.jax_env import JaxEnv
from common.envs.spaces import Space

INSTALL = 'pip install --no-deps gymnax==1.0.1'


def _gymnax():
  try:
    import gymnax  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f'gymnax envs need the gymnax package: {INSTALL}') from None
  return gymnax


def ids():
  return tuple(_gymnax().registered_envs)


def check_task(task: str):
  if task not in ids():
    raise ValueError(f"Unknown gymnax id '{task}' (name gymnax_{task}); one of: "
                     f"{', '.join(ids())}.")


class GymnaxEnv(JaxEnv):
  """One gymnax environment id as a `JaxEnv`."""

  def __init__(self, task: str, config: EnvConfig):
    check_task(task)
    env, params = _gymnax().make(task)
    if config.time_limit:
      params = params.replace(max_steps_in_episode=int(config.time_limit))
    self._env, self._params = env, params
    space = env.action_space(params)
    self._discrete = hasattr(space, 'n')
    if self._discrete:
      self.act_space = Space(np.int32, (), 0, int(space.n) - 1)
    else:
      self._low = np.broadcast_to(np.asarray(space.low, np.float32), space.shape)
      self._high = np.broadcast_to(np.asarray(space.high, np.float32), space.shape)
      self.act_space = Space(np.float32, space.shape, -1.0, 1.0)
    size = int(np.prod(env.observation_space(params).shape))
    self.obs_space = {'vector': Space(np.float32, (size,), -np.inf, np.inf), **step_spaces()}

  def _action(self, action):
    if self._discrete:
      return action
    return self._low + (action + 1.0) * 0.5 * (self._high - self._low)

  def reset_one(self, key):
    import jax.numpy as jnp
    raw_obs, state = self._env.reset_env(key, self._params)
    return {'vector': jnp.ravel(raw_obs).astype(jnp.float32)}, state

  def step_one(self, key, state, action):
    import jax.numpy as jnp
    raw_obs, state, reward, terminated, _ = self._env.step_env(
        key, state, self._action(action), self._params)
    terminated = jnp.asarray(terminated, bool).reshape(())
    cut = jnp.asarray(self._env.is_truncated(state, self._params), bool).reshape(())
    obs = {'vector': jnp.ravel(raw_obs).astype(jnp.float32),
           'reward': jnp.asarray(reward, jnp.float32).reshape(()),
           'is_last': terminated | cut, 'is_terminal': terminated}
    return obs, state


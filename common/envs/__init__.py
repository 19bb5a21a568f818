"""Environments by name (`suite_task`) behind one interface (DreamerV3's).

  env = make('atari_pong')                      # suite defaults, then overrides:
  env = make('dmc_walker_walk', size=(64, 64), action_repeat=2)
  obs = env.step(action)                        # first call resets; see base.Env
  batch = make_batch(EnvConfig(name='atari_pong', ...), num=16, seed=0)
  obs = batch.step(actions)                     # [N, ...]

Suites (names): atari_<game>, atari100k_<game>, dmc_<domain>_<task>,
crafter_reward, crafter_noreward, craftax_classic, craftax,
minecraft_<task> (MineRL; not installable here), gym_<gymnasium id>, gymnax_<gymnax id>,
mjx_<domain>_<task> (DMC tasks simulated by MuJoCo MJX).

JAX-native envs (craftax, gymnax, mjx) are also `JaxEnv`s (`make_jax`), which
`common/run/device_loop.py` compiles into one program with the agent.

Observation dicts: `image` uint8 [H, W, C] and/or float32 vector keys, `reward`
float32, `is_first`, `is_last`, `is_terminal` bool, and logging-only `log/*`
keys that agents must not feed to their networks. Actions: int32 [] (discrete,
`act_space.discrete`) or float32 [A] in [-1, 1].

`suite_defaults(suite)` holds each suite's paper settings (DreamerV3's Atari,
Atari 100k, PlaNet/Dreamer DMC, ...). `make` applies them before its keyword
overrides; `make_batch` takes an EnvConfig as is, so suite presets should build
theirs with `suite_config(name)` (or apply `suite_defaults`).

May import: nothing else of `common` (only each other).
"""
import dataclasses
import functools

from common.envs.base import Env
from common.envs.config import EnvConfig
from common.envs.parallel import BatchEnv
from common.envs.spaces import Space, check_action, check_actions

SUITES = ('atari', 'atari100k', 'dmc', 'crafter', 'craftax', 'minecraft', 'gym', 'gymnax',
          'mjx')
# Suites whose envs are JAX functions (`make_jax`): the ones `--loop device` can run.
JAX_SUITES = ('craftax', 'gymnax', 'mjx')

_SUITE_DEFAULTS = {
    # DreamerV3 (Hafner et al. 2023), Atari 200M setting, as the reference code that made
    # the published curves ran it (danijar/dreamerv3 2411f7d configs.yaml: no no-ops).
    'atari': dict(action_repeat=4, size=(96, 96), gray=True, sticky=True, noops=0,
                  actions='all', lives='unused', time_limit=0),
    # Atari 100k (Kaiser et al. 2020) as DreamerV3's 2411f7d config runs it.
    'atari100k': dict(action_repeat=4, size=(64, 64), gray=False, sticky=False, noops=0,
                      actions='all', lives='unused', time_limit=0),
    # PlaNet / Dreamer: 64x64 pixels, action repeat 2.
    'dmc': dict(action_repeat=2, size=(64, 64), pixels=True, proprio=False, camera=-1),
    'crafter': dict(action_repeat=1, size=(64, 64)),
    'craftax': dict(action_repeat=1, size=(64, 64), pixels=True),
    # DreamerV3 Minecraft Diamond: 36000-step episodes.
    'minecraft': dict(action_repeat=1, size=(64, 64), time_limit=36000),
    'gym': dict(action_repeat=1, pixels=False, proprio=True),
    'gymnax': dict(action_repeat=1, pixels=False, proprio=True),
    # DMC's action repeat, proprio (pixels, ray cast in JAX, with env.pixels=True).
    'mjx': dict(action_repeat=2, size=(64, 64), pixels=False, proprio=True, camera=-1),
}


def suite_of(name: str) -> str:
  """'atari_pong' -> 'atari'; raises a ValueError listing the suites otherwise."""
  suite = name.split('_', 1)[0] if isinstance(name, str) else None
  if suite not in SUITES:
    raise ValueError(f"Unknown env '{name}': the suite '{suite}' is not one of "
                     f"{', '.join(SUITES)} (names are suite_task, e.g. atari_pong, "
                     'dmc_walker_walk, crafter_reward, craftax_classic, gym_CartPole-v1, '
                     'gymnax_Breakout-MinAtar).')
  return suite


def suite_defaults(suite: str) -> dict:
  """The EnvConfig fields a suite sets (a copy)."""
  if suite not in SUITES:
    suite_of(suite)
  return dict(_SUITE_DEFAULTS[suite])


def suite_config(name: str, base: EnvConfig = EnvConfig(), **overrides) -> EnvConfig:
  """EnvConfig for `name`: `base`, then the suite's defaults, then `overrides`."""
  fields = {**suite_defaults(suite_of(name)), **overrides}
  _check_fields(fields)
  return dataclasses.replace(base, name=name, **fields)


def _check_fields(fields):
  known = {field.name for field in dataclasses.fields(EnvConfig)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise TypeError(f"Unknown EnvConfig field(s) {unknown}; known: {sorted(known)}.")


def make(name: str, seed: int = 0, **fields) -> Env:
  """One env by name with the suite's defaults and `fields` (EnvConfig fields)."""
  return make_env(suite_config(name, **fields), seed)


def make_env(config: EnvConfig, seed: int = 0) -> Env:
  """One env from a complete EnvConfig (no suite defaults applied)."""
  name = config.name
  suite = suite_of(name)
  task = name.split('_', 1)[1] if '_' in name else ''
  if suite in ('crafter', 'craftax', 'minecraft', 'gymnax') and config.action_repeat != 1:
    raise ValueError(f'EnvConfig.action_repeat = {config.action_repeat}: {suite} supports '
                     'only 1.')
  if not task and suite != 'craftax':
    raise ValueError(f"Env name '{name}' has no task; use {suite}_<task>.")
  if suite in ('atari', 'atari100k'):
    from common.envs.atari import Atari
    return Atari(task, config, seed)
  if suite == 'dmc':
    from common.envs.dmc import DMC
    return DMC(task, config, seed)
  if suite == 'crafter':
    from common.envs.crafter import Crafter
    return Crafter(task, config, seed)
  if suite in JAX_SUITES:
    from common.envs.jax_env import JaxSingle
    return JaxSingle(make_jax(config), seed)
  if suite == 'minecraft':
    from common.envs.minecraft import Minecraft
    return Minecraft(task, config, seed)
  from common.envs.gym import Gym
  return Gym(task, config, seed)


def _craftax_task(name):
  tasks = {'craftax': 'full', 'craftax_classic': 'classic'}
  if name not in tasks:
    raise ValueError(f"Unknown Craftax env '{name}'; use craftax_classic or craftax.")
  return tasks[name]


def check_jax(config: EnvConfig) -> None:
  """ValueError naming the JAX-native envs when `config.name` is not one (`make_jax`)."""
  if suite_of(config.name) not in JAX_SUITES:
    raise ValueError(f"env '{config.name}' is not a JAX function; the JAX-native envs are "
                     "craftax_classic, craftax, gymnax_<id> (e.g. gymnax_CartPole-v1, "
                     "gymnax_Breakout-MinAtar) and mjx_<domain>_<task> (e.g. "
                     "mjx_cartpole_swingup).")


def make_jax(config: EnvConfig):
  """The `JaxEnv` of a JAX-native env (`JAX_SUITES`); ValueError naming them otherwise."""
  check_jax(config)
  suite = suite_of(config.name)
  if suite == 'mjx':
    from common.envs.mjx import MjxEnv
    return MjxEnv(config.name.split('_', 1)[1], config)
  if config.action_repeat != 1:
    raise ValueError(f'EnvConfig.action_repeat = {config.action_repeat}: {suite} supports '
                     'only 1.')
  if suite == 'craftax':
    from common.envs.craftax import CraftaxEnv
    return CraftaxEnv(_craftax_task(config.name), config)
  from common.envs.gymnax import GymnaxEnv
  return GymnaxEnv(config.name.split('_', 1)[1], config)


def env_seed(seed: int, index: int) -> int:
  """Distinct seeds for env `index` of a run with `seed`."""
  return (int(seed) * 100_003 + int(index)) % (2 ** 31 - 1)


def make_batch(env_config: EnvConfig, num: int, seed: int = 0, **batch_kwargs):
  """`num` envs of `env_config` with the [N]-batched BatchEnv API.

  Workers follow `env_config.parallel`; JAX-native envs (Craftax, gymnax) always run
  vmapped in-process.
  `batch_kwargs` go to BatchEnv (context, timeout, max_restarts).
  """
  if num < 1:
    raise ValueError(f'make_batch: num = {num} must be >= 1.')
  suite_of(env_config.name)
  if suite_of(env_config.name) in JAX_SUITES:
    from common.envs.jax_env import JaxBatch
    return JaxBatch(make_jax(env_config), num, seed)
  # Fail fast here (a clear error) for a bad name, before any worker starts.
  check_name(env_config)
  constructors = [functools.partial(make_env, env_config, env_seed(seed, index))
                  for index in range(num)]
  return BatchEnv(constructors, env_config.parallel, **batch_kwargs)


def check_name(config: EnvConfig) -> None:
  """Raises ValueError naming the problem when `config.name` is no known suite_task."""
  suite = suite_of(config.name)
  task = config.name.split('_', 1)[1] if '_' in config.name else ''
  if not task and suite != 'craftax':
    raise ValueError(f"Env name '{config.name}' has no task; use {suite}_<task>.")
  if suite in ('atari', 'atari100k'):
    from common.envs.atari import games
    if task not in games():
      raise ValueError(f"Unknown Atari game '{task}'; one of: {', '.join(games())}.")
  elif suite == 'dmc':
    from common.envs.dmc import split_task, tasks
    split_task(task)
    if task not in tasks():
      raise ValueError(f"Unknown DMC task '{task}'; one of: {', '.join(tasks())}.")
  elif suite == 'gymnax':
    from common.envs.gymnax import check_task
    check_task(task)
  elif suite == 'craftax':
    _craftax_task(config.name)
  elif suite == 'mjx':
    from common.envs.mjx import check_task as check_mjx_task
    check_mjx_task(task)
  elif suite == 'gym':
    import gymnasium
    from common.envs.gym import resolve_id
    if resolve_id(task) not in gymnasium.registry:
      raise ValueError(f"Unknown gymnasium id '{task}' (name gym_{task}); register it with "
                       'gymnasium.register or pick one of gymnasium.registry.keys().')


__all__ = ['JAX_SUITES', 'SUITES', 'BatchEnv', 'Env', 'EnvConfig', 'Space', 'check_action',
           'check_actions', 'check_jax', 'env_seed', 'make', 'make_batch', 'make_env', 'make_jax',
           'suite_config', 'suite_defaults', 'suite_of']

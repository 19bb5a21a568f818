"""Crafter (Hafner 2021, "Benchmarking the Spectrum of Agent Capabilities").

`crafter_reward` (the benchmark reward) and `crafter_noreward` (reward 0; for
unsupervised agents; the true reward still goes to `log/reward`).
Observations: `image` uint8 [64, 64, 3] (EnvConfig.size), and for logging
`log/reward` float32 and `log/achievement_<name>` int32 counts within the
episode (22 achievements; the success rate of each is the fraction of episodes
with a count > 0, the Crafter score their geometric mean). Actions: int32 [] of 17.
Death is terminal; the 10000-step length (or EnvConfig.time_limit) is a cut.
"""
import numpy as np

from common.envs.base import Env, image_space, step_spaces, transition
from common.envs.config import EnvConfig
from common.envs.spaces import Space

ACHIEVEMENTS = (
    'collect_coal', 'collect_diamond', 'collect_drink', 'collect_iron', 'collect_sapling',
    'collect_stone', 'collect_wood', 'defeat_skeleton', 'defeat_zombie', 'eat_cow', 'eat_plant',
    'make_iron_pickaxe', 'make_iron_sword', 'make_stone_pickaxe', 'make_stone_sword',
    'make_wood_pickaxe', 'make_wood_sword', 'place_furnace', 'place_plant', 'place_stone',
    'place_table', 'wake_up')


class Crafter(Env):

  def __init__(self, task: str, config: EnvConfig, seed: int = 0):
    import crafter
    if task not in ('reward', 'noreward'):
      raise ValueError(f"Unknown Crafter task '{task}'; use crafter_reward or crafter_noreward.")
    super().__init__(0)  # Crafter's own `length` applies the time limit.
    self._reward = task == 'reward'
    length = config.time_limit or 10000
    self._env = crafter.Env(size=tuple(config.size), reward=True, length=length, seed=int(seed))
    self.obs_space = {
        'image': image_space(*config.size, 3),
        'log/reward': Space(np.float32, (), -np.inf, np.inf),
        **{f'log/achievement_{name}': Space(np.int32, (), 0, np.iinfo(np.int32).max)
           for name in ACHIEVEMENTS},
        **step_spaces(),
    }
    self.act_space = Space(np.int32, (), 0, self._env.action_space.n - 1)

  def _obs(self, image, reward, achievements):
    obs = {'image': image, 'log/reward': np.float32(reward)}
    for name in ACHIEVEMENTS:
      obs[f'log/achievement_{name}'] = np.int32(achievements.get(name, 0))
    return obs

  def _reset(self):
    image = self._env.reset()
    return transition(self._obs(image, 0.0, {}), is_first=True)

  def _step(self, action):
    image, reward, done, info = self._env.step(int(action))
    is_terminal = bool(done and info['discount'] == 0)
    obs = self._obs(image, reward, info['achievements'])
    return transition(obs, reward if self._reward else 0.0, is_last=done, is_terminal=is_terminal)

"""Minecraft through MineRL, set up as DreamerV3 sets up Minecraft Diamond.

NOT RUNNABLE HERE: MineRL downloads and builds Minecraft (Gradle) at install or
first reset, which the machines this suite is built on cannot do. The adapter is
written against MineRL's documented gym API (`minerl` >= 0.4: `gym.make(id)`,
`reset() -> obs`, `step(action_dict) -> (obs, reward, done, info)`, obs dict
with `pov` uint8 [64, 64, 3], `inventory` {item: count}, `equipped_items`
{'mainhand': {'type': str, ...}}; action dict from `action_space.noop()` with
binary keys `forward back left right jump sneak sprint attack`, `camera`
[pitch, yaw] degrees, enums `craft nearbyCraft nearbySmelt place equip`). It is
tested against a stand-in object with these spaces (tests/common/envs).

`minecraft_<task>`: diamond (MineRLObtainDiamond-v0), iron_pickaxe
(MineRLObtainIronPickaxe-v0), treechop (MineRLTreechop-v0); any MineRL id
also works as `minecraft_<id>`. Observations: `image` uint8 [64, 64, 3];
`inventory` float32 [I] (counts of ITEMS), `inventory_max` float32 [I] (the
most held this episode), `equipped` float32 [E] one-hot of the main-hand tool.
Actions: int32 [] indexing ACTIONS, a flat discrete set of movement, camera
turns of 15 degrees, attack, and the crafting / placing / equipping steps of
the diamond chain (actions whose key the env lacks are no-ops).
Reward (DreamerV3's milestones): +1 the first time in an episode each item of
MILESTONES enters the inventory; the env's own reward is ignored. Death is
terminal; the 36000-step limit (EnvConfig.time_limit) is a cut.
"""
import numpy as np

from common.envs.base import Env, image_space, resize, step_spaces, transition
from common.envs.config import EnvConfig
from common.envs.spaces import Space

TASKS = {
    'diamond': 'MineRLObtainDiamond-v0',
    'iron_pickaxe': 'MineRLObtainIronPickaxe-v0',
    'treechop': 'MineRLTreechop-v0',
}
ITEMS = (
    'coal', 'cobblestone', 'crafting_table', 'diamond', 'dirt', 'furnace', 'iron_axe',
    'iron_ingot', 'iron_ore', 'iron_pickaxe', 'log', 'planks', 'stick', 'stone', 'stone_axe',
    'stone_pickaxe', 'torch', 'wooden_axe', 'wooden_pickaxe')
EQUIPPED = ('none', 'air', 'other', 'wooden_axe', 'wooden_pickaxe', 'stone_axe', 'stone_pickaxe',
            'iron_axe', 'iron_pickaxe')
MILESTONES = (
    'log', 'planks', 'stick', 'crafting_table', 'wooden_pickaxe', 'cobblestone', 'stone_pickaxe',
    'iron_ore', 'furnace', 'iron_ingot', 'iron_pickaxe', 'diamond')
TURN = 15.0  # degrees per camera action
# name -> partial MineRL action dict (merged into action_space.noop()).
ACTIONS = (
    ('noop', {}),
    ('attack', {'attack': 1}),
    ('forward', {'forward': 1}),
    ('forward_jump', {'forward': 1, 'jump': 1}),
    ('back', {'back': 1}),
    ('left', {'left': 1}),
    ('right', {'right': 1}),
    ('jump', {'jump': 1}),
    ('turn_up', {'camera': (-TURN, 0.0)}),
    ('turn_down', {'camera': (TURN, 0.0)}),
    ('turn_left', {'camera': (0.0, -TURN)}),
    ('turn_right', {'camera': (0.0, TURN)}),
    ('craft_planks', {'craft': 'planks'}),
    ('craft_stick', {'craft': 'stick'}),
    ('craft_crafting_table', {'craft': 'crafting_table'}),
    ('craft_torch', {'craft': 'torch'}),
    ('place_crafting_table', {'place': 'crafting_table'}),
    ('place_furnace', {'place': 'furnace'}),
    ('place_cobblestone', {'place': 'cobblestone'}),
    ('place_torch', {'place': 'torch'}),
    ('nearby_craft_wooden_pickaxe', {'nearbyCraft': 'wooden_pickaxe'}),
    ('nearby_craft_stone_pickaxe', {'nearbyCraft': 'stone_pickaxe'}),
    ('nearby_craft_iron_pickaxe', {'nearbyCraft': 'iron_pickaxe'}),
    ('nearby_craft_furnace', {'nearbyCraft': 'furnace'}),
    ('nearby_smelt_iron_ingot', {'nearbySmelt': 'iron_ingot'}),
    ('equip_wooden_pickaxe', {'equip': 'wooden_pickaxe'}),
    ('equip_stone_pickaxe', {'equip': 'stone_pickaxe'}),
    ('equip_iron_pickaxe', {'equip': 'iron_pickaxe'}),
)


def make_minerl(env_id: str):
  """Builds the MineRL env; a clear error where MineRL is not installed."""
  try:
    import gym  # MineRL registers its envs with the old `gym` package.
    import minerl  # noqa: F401  pylint: disable=unused-import
  except ImportError as error:
    raise ImportError(
        f'minecraft_* needs MineRL (pip install minerl; it downloads and builds Minecraft, '
        f'needs Java 8 and network access), which is not installed: {error}') from error
  return gym.make(env_id)


class Minecraft(Env):
  """`env_factory()` returns a MineRL-like env (tests pass a stand-in)."""

  def __init__(self, task: str, config: EnvConfig, seed: int = 0, env_factory=None):
    super().__init__(config.time_limit)
    env_id = TASKS.get(task, task)
    if env_factory is None and not env_id.startswith('MineRL'):
      raise ValueError(f"Unknown Minecraft task '{task}'; use one of {sorted(TASKS)} or a "
                       "MineRL id (minecraft_MineRLObtainDiamond-v0).")
    self._env = env_factory() if env_factory else make_minerl(env_id)
    self._size = tuple(config.size)
    self._seed = int(seed)
    spaces = getattr(self._env.action_space, 'spaces', {})
    self._actions = []
    for _, change in ACTIONS:
      usable = all(key in spaces for key in change)
      for key, value in change.items():
        if usable and isinstance(value, str):  # Enum values the env does not offer.
          values = getattr(spaces[key], 'values', None)
          usable = values is None or value in list(values)
      self._actions.append(change if usable else {})
    self.obs_space = {
        'image': image_space(*self._size, 3),
        'inventory': Space(np.float32, (len(ITEMS),), 0.0, np.inf),
        'inventory_max': Space(np.float32, (len(ITEMS),), 0.0, np.inf),
        'equipped': Space(np.float32, (len(EQUIPPED),), 0.0, 1.0),
        **step_spaces(),
    }
    self.act_space = Space(np.int32, (), 0, len(ACTIONS) - 1)
    self._max = np.zeros(len(ITEMS), np.float32)
    self._reached = set()

  def _obs(self, raw):
    inventory_dict = raw.get('inventory', {})
    inventory = np.array([float(np.asarray(inventory_dict.get(item, 0))) for item in ITEMS],
                         np.float32)
    self._max = np.maximum(self._max, inventory)
    tool = raw.get('equipped_items', {}).get('mainhand', {}).get('type', 'none')
    tool = str(tool)
    equipped = np.zeros(len(EQUIPPED), np.float32)
    equipped[EQUIPPED.index(tool) if tool in EQUIPPED else EQUIPPED.index('other')] = 1.0
    image = resize(np.asarray(raw['pov'], np.uint8), self._size)
    return {'image': image, 'inventory': inventory, 'inventory_max': self._max.copy(),
            'equipped': equipped}

  def _milestones(self, obs):
    reward = 0.0
    for item in MILESTONES:
      if item not in self._reached and obs['inventory'][ITEMS.index(item)] > 0:
        self._reached.add(item)
        reward += 1.0
    return reward

  def _reset(self):
    if self._seed is not None and hasattr(self._env, 'seed'):
      self._env.seed(self._seed)
      self._seed = None
    self._max[:] = 0.0
    self._reached = set()
    obs = self._obs(self._env.reset())
    self._milestones(obs)  # Items held at spawn give no reward.
    return transition(obs, is_first=True)

  def _step(self, action):
    command = self._env.action_space.noop()
    for key, value in self._actions[int(action)].items():
      command[key] = np.array(value, np.float32) if key == 'camera' else value
    raw, _, done, info = self._env.step(command)
    obs = self._obs(raw)
    reward = self._milestones(obs)
    # MineRL ends an episode on death or at its own time limit; it reports no flag
    # for either, so a zero-health life stat (when present) marks death as terminal.
    health = np.asarray(raw.get('life_stats', {}).get('life', 1.0))
    is_terminal = bool(done and health <= 0)
    return transition(obs, reward, is_last=bool(done), is_terminal=is_terminal)

  def close(self):
    self._env.close()

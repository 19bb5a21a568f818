"""Benchmark suites: task lists, step budgets and evaluation protocols.

Each `Suite` names its tasks as the published score files do (`atari_pong`,
`dmc_walker_walk`, ...), the env name an entry point is launched with
(`Suite.env_name(task)`), the budget in environment frames and how a final
score is read off a learning curve (`Protocol`). Budgets and protocols are
the papers'; where a paper leaves a choice open, the field's comment says so.

  suite = get('atari100k')
  suite.tasks            # 26 games
  suite.protocol.budget  # 400_000 frames
  suite.steps            # 100_000 agent steps (frames / action repeat)
"""
import dataclasses
import difflib
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Protocol:
  budget: int                 # environment frames (simulator steps) per run; 0: the algorithm's own schedule
  action_repeat: int          # frames per agent step, so agent steps = budget // action_repeat
  final_window: int           # final score = mean of the episodes ending in the last `final_window` frames
  normalise: str = 'none'     # 'human': (score - random) / (human - random) from baselines.yaml; 'none': raw
  baselines: str = ''         # section of baselines.yaml holding [random, human] per task
  headline: tuple = ('mean', 'median', 'iqm')  # suite aggregates reported across tasks
  seeds: int = 5              # seeds per task the reference results use
  source: str = ''            # the paper the protocol follows


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  tasks: tuple                # task names as in published score files
  protocol: Protocol
  env_prefix: str = ''        # launch name: env_prefix + task without its own prefix ('' keeps the task)
  description: str = ''

  @property
  def steps(self) -> int:
    """Agent steps of the budget (0: let the algorithm's preset decide)."""
    return self.protocol.budget // self.protocol.action_repeat

  def env_name(self, task: str) -> str:
    """The `--env` name of a task: 'atari_pong' -> 'atari100k_pong' for Atari 100k."""
    if not self.env_prefix:
      return task
    return self.env_prefix + task.split('_', 1)[1]


# Kaiser et al. 2020 (SimPLe), Table 1: the 26 games of Atari 100k.
ATARI100K = (
    'alien', 'amidar', 'assault', 'asterix', 'bank_heist', 'battle_zone', 'boxing', 'breakout',
    'chopper_command', 'crazy_climber', 'demon_attack', 'freeway', 'frostbite', 'gopher', 'hero',
    'jamesbond', 'kangaroo', 'krull', 'kung_fu_master', 'ms_pacman', 'pong', 'private_eye',
    'qbert', 'road_runner', 'seaquest', 'up_n_down')

# Mnih et al. 2015 / Badia et al. 2020: the 57 games with human baselines.
ATARI57 = (
    'alien', 'amidar', 'assault', 'asterix', 'asteroids', 'atlantis', 'bank_heist', 'battle_zone',
    'beam_rider', 'berzerk', 'bowling', 'boxing', 'breakout', 'centipede', 'chopper_command',
    'crazy_climber', 'defender', 'demon_attack', 'double_dunk', 'enduro', 'fishing_derby',
    'freeway', 'frostbite', 'gopher', 'gravitar', 'hero', 'ice_hockey', 'jamesbond', 'kangaroo',
    'krull', 'kung_fu_master', 'montezuma_revenge', 'ms_pacman', 'name_this_game', 'phoenix',
    'pitfall', 'pong', 'private_eye', 'qbert', 'riverraid', 'road_runner', 'robotank', 'seaquest',
    'skiing', 'solaris', 'space_invaders', 'star_gunner', 'surround', 'tennis', 'time_pilot',
    'tutankham', 'up_n_down', 'venture', 'video_pinball', 'wizard_of_wor', 'yars_revenge',
    'zaxxon')

# DreamerV3 (Hafner et al. 2023), Appendix: DMC Proprio (18 tasks) and DMC Vision (20 tasks;
# the two quadruped tasks are vision only).
DMC_PROPRIO = (
    'acrobot_swingup', 'ball_in_cup_catch', 'cartpole_balance', 'cartpole_balance_sparse',
    'cartpole_swingup', 'cartpole_swingup_sparse', 'cheetah_run', 'finger_spin',
    'finger_turn_easy', 'finger_turn_hard', 'hopper_hop', 'hopper_stand', 'pendulum_swingup',
    'reacher_easy', 'reacher_hard', 'walker_run', 'walker_stand', 'walker_walk')
DMC_VISION = tuple(sorted(DMC_PROPRIO + ('quadruped_run', 'quadruped_walk')))


def _prefixed(prefix, names):
  return tuple(prefix + name for name in names)


SUITES = {
    'atari100k': Suite(
        'atari100k', _prefixed('atari_', ATARI100K),
        Protocol(
            # 100k agent steps at action repeat 4 = 400k frames (Kaiser et al. 2020); the
            # score of a seed is the mean of the episodes in the last 10k frames (issue 8).
            budget=400_000, action_repeat=4, final_window=10_000, normalise='human',
            baselines='atari57_gamer', seeds=5,
            source='Kaiser et al. 2020 (SimPLe); DreamerV3 Sec. 4 / Table 2'),
        env_prefix='atari100k_',
        description='Atari 100k: 26 games, 400k frames, no sticky actions, all 18 actions.'),
    'atari57': Suite(
        'atari57', _prefixed('atari_', ATARI57),
        Protocol(
            # 200M frames, sticky actions, full action set, no life loss signal (Machado et al.
            # 2018, as DreamerV3 runs it). The final window (last 1% of the budget) is our choice.
            budget=200_000_000, action_repeat=4, final_window=2_000_000, normalise='human',
            baselines='atari57_gamer', seeds=5,
            source='Machado et al. 2018; DreamerV3 Sec. 4 (Atari 200M)'),
        env_prefix='atari_',
        description='Atari 57 at 200M frames, sticky actions; human-normalised aggregates.'),
    'dmc_proprio': Suite(
        'dmc_proprio', _prefixed('dmc_', DMC_PROPRIO),
        Protocol(
            # 500k env steps at action repeat 2 (DreamerV3, Proprio Control). The final window
            # (the last 5% of the budget, 25 episodes of 1000 frames) is our choice.
            budget=500_000, action_repeat=2, final_window=25_000, seeds=5,
            source='DreamerV3 Sec. 4 (DMC Proprio, 500k steps)'),
        description='DeepMind Control from proprioceptive vectors, 18 tasks, 500k frames.'),
    'dmc_vision': Suite(
        'dmc_vision', _prefixed('dmc_', DMC_VISION),
        Protocol(
            # 1M env steps at action repeat 2 from 64x64 images (DreamerV3, Visual Control);
            # the final window (the last 5% of the budget) is our choice.
            budget=1_000_000, action_repeat=2, final_window=50_000, seeds=5,
            source='DreamerV3 Sec. 4 (DMC Vision, 1M steps)'),
        description='DeepMind Control from 64x64 pixels, 20 tasks, 1M frames.'),
    'crafter': Suite(
        'crafter', ('crafter_reward',),
        Protocol(
            # Hafner 2021: 1M env steps; the Crafter score is the geometric mean of achievement
            # success rates over all training episodes (`crafter_score`); the return curve is
            # read off its last 10% of the budget here.
            budget=1_000_000, action_repeat=1, final_window=100_000, seeds=10,
            source='Hafner 2021 (Crafter); DreamerV3 Sec. 4'),
        description='Crafter with rewards, 1M steps; score: success-rate geometric mean.'),
    'craftax': Suite(
        'craftax', ('craftax_classic', 'craftax'),
        Protocol(
            # Matthews et al. 2024: the Craftax-1M sample-efficiency benchmark (1M env steps),
            # reported as a percentage of the maximum return.
            budget=1_000_000, action_repeat=1, final_window=100_000, seeds=10,
            source='Matthews et al. 2024 (Craftax), Craftax-1M'),
        description='Craftax-Classic and Craftax (JAX Crafter), 1M steps.'),
    'minecraft': Suite(
        'minecraft', ('minecraft_diamond',),
        Protocol(
            # DreamerV3: 100M env steps, 36k-step episodes; return counts the 12 milestone
            # items, each rewarded once. The final window (last 1%) is our choice.
            budget=100_000_000, action_repeat=1, final_window=1_000_000, seeds=10,
            source='DreamerV3 Sec. 4 (Minecraft Diamond)'),
        description='Minecraft Diamond (MineRL), 100M steps.'),
    'world_models': Suite(
        'world_models', ('car_racing', 'doom_take_cover'),
        Protocol(
            # Ha & Schmidhuber 2018: the staged pipeline sets its own schedule; the score is
            # the average over 100 evaluation trials (CarRacing solved at 900, Doom at 750).
            budget=0, action_repeat=1, final_window=0, seeds=1,
            source='Ha & Schmidhuber 2018 (World Models), Sec. 3-4'),
        description='World Models tasks: CarRacing-v3 and VizDoom TakeCover.'),
    'gym': Suite(
        'gym', ('gym_CartPole-v1', 'gym_Acrobot-v1', 'gym_Pendulum-v1',
                'gym_MountainCarContinuous-v0'),
        Protocol(budget=100_000, action_repeat=1, final_window=10_000, seeds=3,
                 source='smoke-test suite (no paper)'),
        description='Gymnasium classic control from vectors: quick checks, not a benchmark.'),
}


def get(name: str) -> Suite:
  """The suite called `name`; a ValueError listing the suites otherwise."""
  if name not in SUITES:
    close = difflib.get_close_matches(str(name), SUITES, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ''
    raise ValueError(f"unknown suite '{name}'{hint}; use one of {', '.join(SUITES)}.")
  return SUITES[name]


def check_tasks(suite: Suite, tasks) -> tuple:
  """`tasks` (names, or env names of the suite) as suite task names; ValueError for others."""
  result = []
  launch_names = {suite.env_name(task): task for task in suite.tasks}
  for task in tasks:
    if task in suite.tasks:
      result.append(task)
    elif task in launch_names:
      result.append(launch_names[task])
    else:
      close = difflib.get_close_matches(task, suite.tasks, n=1)
      hint = f" (did you mean '{close[0]}'?)" if close else ''
      raise ValueError(f"--tasks: '{task}' is not a task of suite {suite.name}{hint}; "
                       f"its tasks are {', '.join(suite.tasks)}.")
  return tuple(result)


def canonical_task(env_name: str) -> str:
  """The score-file task name of an env name: 'atari100k_pong' -> 'atari_pong'."""
  if env_name.startswith('atari100k_'):
    return 'atari_' + env_name[len('atari100k_'):]
  return env_name


def suite_of_tasks(tasks) -> Optional[Suite]:
  """The smallest suite holding every task in `tasks` (None if there is none)."""
  tasks = set(tasks)
  if not tasks:
    return None
  matches = [suite for suite in SUITES.values() if tasks <= set(suite.tasks)]
  return min(matches, key=lambda suite: len(suite.tasks)) if matches else None


def crafter_score(success_rates) -> float:
  """Crafter score (Hafner 2021, Eq. 1): S = exp(mean_i ln(1 + s_i)) - 1, s_i in percent.

  success_rates: [22] percentages of episodes in which each achievement was unlocked.
  """
  import numpy as np
  rates = np.asarray(success_rates, np.float64)
  if rates.ndim != 1 or rates.size == 0:
    raise ValueError(f'success_rates: expected a non-empty vector of percentages, got shape '
                     f'{rates.shape}.')
  if np.any(rates < 0) or np.any(rates > 100):
    raise ValueError('success_rates: percentages must lie in [0, 100].')
  return float(np.exp(np.mean(np.log1p(rates))) - 1)

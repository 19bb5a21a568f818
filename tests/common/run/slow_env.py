"""CartPole whose steps take 50 ms, so a signal lands while a worker is inside a step.

Named `gym_tests.common.run.slow_env:SlowCartPole-v0` (gymnasium's `module:id` form); each env
worker imports this module, which registers the id."""
import time

import gymnasium
from gymnasium.envs.classic_control import cartpole


class SlowCartPole(cartpole.CartPoleEnv):

  def step(self, action):
    time.sleep(0.05)
    return super().step(action)


gymnasium.register(id='SlowCartPole-v0', entry_point=f'{__name__}:SlowCartPole',
                   max_episode_steps=500)

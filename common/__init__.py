"""What every algorithm shares; nothing here knows an algorithm.

  agent.py   the agent protocol: a NamedTuple of pure functions (the only contract)
  nn/        the primitives the papers define (math, distributions, KL, returns, nets, RSSM, ...)
  replay/    the host replay (chunks on disk) and the device replay (a ring in device memory)
  planning/  CEM, MPPI and gradient planners, goal costs, latent geometry
  envs/      environments by name behind one interface
  run/       what runs an agent: command line, config, the two training loops, checkpoints, logs

Imports point down only (tests/common/test_layout.py checks it): nn imports nothing else of
common; replay and planning import nn at most; envs imports nothing of the others; run may
import all of common; agent.py imports nothing of common.
"""

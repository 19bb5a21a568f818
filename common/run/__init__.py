"""What runs an agent: the machinery between a command line and the agent's pure functions.

  cli.py                     the shared command line (`run_main`), size fit, --loop, --seeds
  config.py, config_values.py  presets composed into one frozen config; value parsing, config.yaml
  train_loop.py              the Python loop: driver -> replay -> train step -> checkpoint
  device_loop.py             the whole loop as one compiled program for JAX-native envs
  driver.py, schedule.py     stepping envs with a policy; train ratio, clocks, stop signals, guard
  devices.py, host_sync.py   data-parallel placement; agreement between hosts
  prefetch.py, memory.py     batches sampled ahead; the train step's peak memory before compiling
  checkpoint.py, logging.py  orbax checkpoints; metrics.jsonl, scores, TensorBoard, console

May import: all of `common`.
"""

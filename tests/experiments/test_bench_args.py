"""experiments/bench_dreamer.py --scaling: each child gets the parent's flags, less its own."""
from experiments import bench_dreamer


def test_drop_flag_removes_the_flag_and_its_values_only():
  argv = ['--sizes', 'size1m', 'size12m', '--batch', '4', '--scaling', '1', '2', '4',
          '--set', 'agent.encoder.depth=4', '--updates', '2']
  assert bench_dreamer._drop_flag(bench_dreamer._drop_flag(argv, '--scaling'), '--sizes') == [
      '--batch', '4', '--set', 'agent.encoder.depth=4', '--updates', '2']

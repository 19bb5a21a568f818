"""Replay sampling speed: samples/s of [16, 64] batches of 64x64x3 uint8 images.

  python -m experiments.bench_replay [--steps 100000] [--streams 16] [--seconds 10]
"""
import argparse
import time

import numpy as np

from common.replay.host import Replay, ReplayConfig


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.bench_replay')
  parser.add_argument('--steps', type=int, default=100_000, help='steps stored in replay')
  parser.add_argument('--streams', type=int, default=16)
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--length', type=int, default=64)
  parser.add_argument('--seconds', type=float, default=10.0)
  args = parser.parse_args(argv)
  replay = Replay(ReplayConfig(capacity=args.steps, chunk=1024), None, seed=0)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 255, (256, 64, 64, 3), dtype=np.uint8)
  start = time.time()
  for i in range(args.steps):
    replay.add({'image': images[i % 256], 'action': np.int32(i % 6), 'reward': np.float32(0),
                'is_first': np.bool_(i % 500 == 0), 'is_last': np.bool_(False),
                'is_terminal': np.bool_(False)}, stream=i % args.streams)
  add_rate = args.steps / (time.time() - start)
  replay.sample(args.batch, args.length)
  count, start = 0, time.time()
  while time.time() - start < args.seconds:
    replay.sample(args.batch, args.length)
    count += 1
  elapsed = time.time() - start
  stats = replay.stats()
  print(f'replay: {stats["steps"]:,} steps, {stats["gb"]:.2f} GB, {args.streams} streams; '
        f'add {add_rate:,.0f} steps/s')
  print(f'sample [{args.batch}, {args.length}] 64x64x3: {count / elapsed:.1f} batches/s, '
        f'{count * args.batch / elapsed:,.0f} sequences/s, '
        f'{count * args.batch * args.length / elapsed:,.0f} steps/s')


if __name__ == '__main__':
  main()

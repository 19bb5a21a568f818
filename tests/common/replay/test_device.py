"""The on-device replay against the host replay and NumPy: coverage, boundaries, queue, update."""
import collections

import jax
import jax.numpy as jnp
import numpy as np

from common.replay import device as device_replay
from common.replay import host as replay_lib

SPEC = {'id': ((), np.int32), 'is_first': ((), bool), 'is_last': ((), bool)}


def _fill(streams, size, steps, episode=7):
  """Steps whose `id` is stream * 10000 + index; every stream starts an episode each `episode`."""
  replay = device_replay.init(SPEC, streams, size)
  add = jax.jit(device_replay.add)
  host = []
  for index in range(steps):
    step = {'id': np.arange(streams, dtype=np.int32) * 10000 + index,
            'is_first': np.full(streams, index % episode == 0),
            'is_last': np.full(streams, index % episode == episode - 1)}
    replay = add(replay, step)
    host.append(step)
  return replay, host


def test_uniform_over_every_held_window_start_after_wrapping():
  streams, size, steps, length = 3, 20, 47, 5   # each ring wrapped twice: holds steps 27..46
  replay, _ = _fill(streams, size, steps)
  assert int(device_replay.starts(replay, length)) == streams * (size - length + 1)
  sample = jax.jit(lambda key: device_replay.sample(replay, key, 64, length)[0]['id'])
  counts = collections.Counter()
  for seed in range(150):
    ids = np.asarray(sample(jax.random.PRNGKey(seed)))
    for window in ids:
      stream, first = divmod(int(window[0]), 10000)
      # One stream, consecutive held steps.
      np.testing.assert_array_equal(window, stream * 10000 + first + np.arange(length))
      assert steps - size <= first <= steps - length
      counts[(stream, first)] += 1
  valid = streams * (size - length + 1)
  assert len(counts) == valid
  expected = 150 * 64 / valid
  chi2 = sum((count - expected) ** 2 / expected for count in counts.values())
  assert chi2 < valid + 5 * np.sqrt(2 * valid)   # far below for a uniform draw


def test_is_last_set_before_every_is_first_inside_a_window():
  replay, _ = _fill(2, 30, 30, episode=4)
  out, (stream, start), _ = device_replay.sample(replay, jax.random.PRNGKey(0), 32, 9)
  for b in range(32):
    index = int(start[b]) + np.arange(9)
    first = index % 4 == 0
    last = (index % 4 == 3) | np.append(first[1:], False)   # the host replay's rule
    np.testing.assert_array_equal(np.asarray(out['is_first'][b]), first)
    np.testing.assert_array_equal(np.asarray(out['is_last'][b]), last)


def test_online_queue_hands_out_the_host_replays_fresh_windows_first():
  streams, length, steps, batch = 2, 4, 26, 3
  replay, host_steps = _fill(streams, 100, steps)
  host = replay_lib.Replay(replay_lib.ReplayConfig(online=True, chunk=8), None, 0, length)
  for step in host_steps:
    for stream in range(streams):
      host.add({key: value[stream] for key, value in step.items()}, stream)
  sample = jax.jit(lambda r, k: device_replay.sample(r, k, batch, length, online=True))
  fresh = streams * ((steps - 1) // length)   # 12 fresh windows, handed out 3 at a time
  for call in range(fresh // batch):
    out, _, replay = sample(replay, jax.random.PRNGKey(call))
    host_out, _ = host.sample_train(batch, length)
    np.testing.assert_array_equal(np.asarray(out['id']), host_out['id'])
  assert int(replay.queue) == fresh
  out, _, replay = sample(replay, jax.random.PRNGKey(99))   # queue empty: uniform windows
  assert int(replay.queue) == fresh


def test_update_writes_back_and_skips_evicted_steps():
  streams, size = 2, 10
  replay, _ = _fill(streams, size, 15)   # holds steps 5..14
  where = (jnp.array([1, 0]), jnp.array([3, 9]))   # window starts (absolute)
  values = {'id': -jnp.arange(1, 9).reshape(2, 4)}
  updated = device_replay.update(replay, where, 1, values)
  expected = np.asarray(replay.data['id']).copy()
  for b, (stream, start) in enumerate(zip([1, 0], [3, 9])):
    for t in range(4):
      position = start + 1 + t
      if position >= 5:   # steps 4 and earlier were overwritten by newer ones
        expected[stream, position % size] = -(b * 4 + t + 1)
  np.testing.assert_array_equal(np.asarray(updated.data['id']), expected)


def test_memory_counts_every_stream_and_step():
  spec = {'image': ((64, 64, 3), np.uint8), 'reward': ((), np.float32)}
  assert device_replay.nbytes(spec, 4, 1000) == 4 * 1000 * (64 * 64 * 3 + 4)
  assert device_replay.stream_size(10_000, 16) == 625


def _fill_episodes(lengths_per_stream, size, prioritize_ends):
  """Device and host replays holding the same streams of episodes of the given lengths."""
  spec = {'id': ((), np.int32), 'is_first': ((), bool), 'is_last': ((), bool)}
  streams = len(lengths_per_stream)
  flags = []
  for lengths in lengths_per_stream:
    first, last = [], []
    for length in lengths:   # an episode of `length` steps after its reset step
      first += [True] + [False] * length
      last += [False] * length + [True]
    flags.append((first, last))
  steps = min(len(first) for first, _ in flags)
  replay = device_replay.init(spec, streams, size, episodes=True)
  host = replay_lib.Replay(replay_lib.ReplayConfig(sample='episodes', chunk=16,
                                                   prioritize_ends=prioritize_ends))
  add = jax.jit(device_replay.add)
  for index in range(steps):
    step = {'id': np.arange(streams, dtype=np.int32) * 10000 + index,
            'is_first': np.array([f[0][index] for f in flags]),
            'is_last': np.array([f[1][index] for f in flags])}
    replay = add(replay, step)
    for stream in range(streams):
      host.add({key: value[stream] for key, value in step.items()}, stream)
  return replay, host


def _exact_episode_windows(lengths_per_stream, length, prioritize_ends):
  """P(window start id): a uniform episode longer than the window, then the host replay's
  offset rule (`min(uniform(0, upper), last)`, upper extended by the window length)."""
  episodes = []
  for stream, lengths in enumerate(lengths_per_stream):
    start = 0
    for steps in lengths:
      if steps + 1 > length:
        episodes.append((stream, start, start + steps + 1))
      start += steps + 1
  probs = collections.Counter()
  for stream, first, end in episodes:
    last = end - first - length
    upper = last + 1 + (length if prioritize_ends else 0)
    for draw in range(upper):
      probs[stream * 10000 + first + min(draw, last)] += 1 / len(episodes) / upper
  return probs


def test_episode_sampling_matches_the_host_replays_distribution():
  length, lengths = 4, [[5, 3, 20, 9], [9, 5, 3, 20]]   # 3 steps: too short for a window
  for prioritize_ends in (False, True):
    replay, host = _fill_episodes(lengths, 200, prioritize_ends)
    assert int(device_replay.starts(replay, length)) == host.starts(length)
    sample = jax.jit(lambda key: device_replay.sample(
        replay, key, 512, length, prioritize_ends=prioritize_ends)[0])
    counts = {'device': collections.Counter(), 'host': collections.Counter()}
    for seed in range(50):
      out = sample(jax.random.PRNGKey(seed))
      assert np.asarray(out['is_first'])[:, 0].all()
      assert not np.asarray(out['is_first'])[:, 1:].any()   # inside one episode
      counts['device'].update(int(window[0]) for window in np.asarray(out['id']))
      counts['host'].update(int(window[0]) for window in host.sample(512, length)['id'])
    exact = _exact_episode_windows(lengths, length, prioritize_ends)
    for name, counted in counts.items():
      assert set(counted) <= set(exact), name
      total = sum(counted.values())
      distance = 0.5 * sum(abs(counted[k] / total - p) for k, p in exact.items())
      assert distance < 0.04, (name, prioritize_ends, distance)   # ~0.02 from sampling noise

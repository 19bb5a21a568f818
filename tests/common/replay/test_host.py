"""Replay: contiguity, is_first, uniform coverage, save/load, eviction, corrupt chunks."""
import logging
import os

import numpy as np
import pytest
from scipy import stats as scipy_stats

from common.replay.host import Replay, ReplayConfig


def _episodes(num_steps, stream, rng, image=True):
  """Plain list of steps with random episode lengths; `id` encodes (stream, index)."""
  steps = []
  left = 0
  for i in range(num_steps):
    first = left == 0
    if first:
      left = int(rng.integers(3, 9))
    left -= 1
    step = {'id': np.int64(stream * 1_000_000 + i), 'is_first': np.bool_(first),
            'is_last': np.bool_(left == 0), 'reward': np.float32(rng.normal()),
            'action': np.int32(rng.integers(4))}
    if image:
      step['image'] = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    steps.append(step)
  return steps


def _fill(replay, streams=2, steps=50, seed=0, image=True):
  rng = np.random.default_rng(seed)
  reference = {}
  for s in range(streams):
    reference[s] = _episodes(steps, s, rng, image)
  for i in range(steps):  # interleaved, as the driver adds them
    for s in range(streams):
      replay.add(reference[s][i], stream=s)
  return reference


def _check_window(sample, reference, b):
  """The window is a contiguous slice of one stream's reference list."""
  ids = sample['id'][b]
  stream, start = divmod(int(ids[0]), 1_000_000)
  ref = reference[stream][start:start + len(ids)]
  assert len(ref) == len(ids)
  for t, step in enumerate(ref):
    for key, value in step.items():
      np.testing.assert_array_equal(sample[key][b, t], value, err_msg=key)


def test_sequences_contiguous_and_is_first(tmp_path):
  replay = Replay(ReplayConfig(capacity=1000, chunk=7), tmp_path / 'r', seed=1)
  reference = _fill(replay)
  sample = replay.sample(32, 10)
  assert sample['image'].shape == (32, 10, 4, 4, 3) and sample['image'].dtype == np.uint8
  assert sample['action'].dtype == np.int32
  for b in range(32):
    _check_window(sample, reference, b)
  # Windows cross episode boundaries: is_first appears after t=0 somewhere.
  assert sample['is_first'][:, 1:].any()
  # is_first is set exactly after each is_last (the episode structure survives).
  np.testing.assert_array_equal(sample['is_first'][:, 1:], sample['is_last'][:, :-1])
  replay.close()


def test_uniform_coverage_chi_square():
  replay = Replay(ReplayConfig(capacity=10_000, chunk=5), None, seed=3)
  streams, steps, length = 3, 40, 8
  _fill(replay, streams, steps, image=False)
  starts_per_stream = steps - length + 1
  counts = np.zeros(streams * starts_per_stream)
  for _ in range(100):
    ids = replay.sample(256, length)['id'][:, 0]
    stream, start = np.divmod(ids, 1_000_000)
    np.add.at(counts, stream * starts_per_stream + start, 1)
  expected = counts.sum() / len(counts)
  chi2 = ((counts - expected) ** 2 / expected).sum()
  p_value = scipy_stats.chi2.sf(chi2, len(counts) - 1)
  assert p_value > 1e-4, (chi2, p_value)
  assert (counts > 0).all()


def test_save_reload_equal(tmp_path):
  directory = tmp_path / 'r'
  replay = Replay(ReplayConfig(capacity=1000, chunk=16), directory, seed=0)
  reference = _fill(replay, streams=2, steps=45)
  replay.save()  # flushes the partial chunks as well
  replay.close()
  loaded = Replay(ReplayConfig(capacity=1000, chunk=16), directory, seed=5)
  assert loaded.load() == 90 and len(loaded) == 90
  for _ in range(5):
    sample = loaded.sample(16, 12)
    for b in range(16):
      _check_window(sample, reference, b)
  # Offline mode: every start of each stream is reachable (the streams are whole).
  seen = set()
  for _ in range(40):
    seen.update(loaded.sample(64, 45)['id'][:, 0].tolist())
  assert seen == {0, 1_000_000}
  # A resumed run continues numbering after the loaded chunks.
  loaded.add(reference[0][0], 0)
  loaded.save()
  names = sorted(os.listdir(directory))
  assert len(names) == len(set(names)) == 7 and names[-1].startswith('0000000006')
  loaded.close()


def test_eviction_bounds_memory(tmp_path):
  config = ReplayConfig(capacity=40, chunk=8)
  replay = Replay(config, None)
  _fill(replay, streams=2, steps=100)
  stats = replay.stats()
  # Holds at most capacity steps (partly filled chunks count).
  assert stats['steps'] <= 40 and len(replay) == stats['steps'] >= 40 - 2 * 8
  # The newest data is kept: the last step of each stream can be sampled.
  ids = set()
  for _ in range(50):
    ids.update(replay.sample(32, 1)['id'][:, 0].tolist())
  assert {99, 1_000_099} <= ids and 0 not in ids
  bytes_per_step = sum(v.nbytes for v in _episodes(1, 0, np.random.default_rng())[0].values())
  assert stats['bytes'] <= (40 + 2 * 8) * bytes_per_step


def test_load_respects_capacity(tmp_path):
  directory = tmp_path / 'r'
  replay = Replay(ReplayConfig(capacity=1000, chunk=10), directory)
  _fill(replay, streams=1, steps=100, image=False)
  replay.close()
  small = Replay(ReplayConfig(capacity=30, chunk=10), directory)
  assert small.load() == 30
  assert small.sample(8, 30)['id'][0, 0] == 70  # the newest 30 steps


def test_corrupt_chunks(tmp_path, caplog):
  directory = tmp_path / 'r'
  replay = Replay(ReplayConfig(capacity=1000, chunk=10), directory)
  _fill(replay, streams=1, steps=40, image=False)
  replay.close()
  names = sorted(os.listdir(directory))
  assert len(names) == 4
  # A half-written temp file and a truncated newest chunk: skipped with warnings.
  (directory / f'.{names[-1]}.abc.tmp').write_bytes(b'partial')
  last = directory / names[-1]
  last.write_bytes(last.read_bytes()[:100])
  with caplog.at_level(logging.WARNING):
    loaded = Replay(ReplayConfig(capacity=1000, chunk=10), directory)
    assert loaded.load() == 30
  assert 'half-written' in caplog.text and names[-1] in caplog.text
  # A corrupt chunk in the middle: a clear error naming the file.
  middle = directory / names[1]
  middle.write_bytes(b'garbage')
  with pytest.raises(ValueError, match=names[1]):
    Replay(ReplayConfig(capacity=1000, chunk=10), directory).load()


def test_bad_input():
  replay = Replay(ReplayConfig(capacity=100, chunk=4))
  with pytest.raises(ValueError, match='run.prefill'):
    replay.sample(2, 3)
  replay.add({'a': np.zeros(2)}, 0)
  with pytest.raises(ValueError, match='missing'):
    replay.add({'b': np.zeros(2)}, 0)
  with pytest.raises(ValueError, match=r"step\['a'\]: shape"):
    replay.add({'a': np.zeros(3)}, 0)
  with pytest.raises(ValueError, match='capacity'):
    Replay(ReplayConfig(capacity=0))


def test_cut_episode_ends_before_the_next_begins():
  """V3 reference: a window sets is_last on every step followed by is_first, so an episode
  that was cut (an env worker restarted without an is_last) still ends."""
  replay = Replay(ReplayConfig(capacity=100, chunk=4))
  flags = [1, 0, 0, 1, 0, 0, 0, 1, 0]   # is_first; no is_last was ever stored
  for i, first in enumerate(flags):
    replay.add({'id': np.int64(i), 'is_first': np.bool_(first), 'is_last': np.bool_(False)}, 0)
  sample = replay.sample(64, len(flags))
  expected = np.zeros(len(flags), bool)
  expected[[2, 6]] = True   # the steps before the second and third is_first
  for b in range(64):
    np.testing.assert_array_equal(sample['is_last'][b], expected)
  # The step before a window's end is not known: the last step keeps its stored flag.
  assert not replay.sample(64, 3)['is_last'][:, -1].any()


def test_online_queue_serves_each_fresh_window_once_first():
  """V3 reference `replay.online`: each stream's non-overlapping windows of `length` steps
  (starting at 1, L + 1, 2L + 1, ...) are trained on once, in order, before uniform ones."""
  length = 5
  replay = Replay(ReplayConfig(capacity=1000, chunk=8, online=True), None, seed=0, length=length)
  _fill(replay, streams=2, steps=23, image=False)
  # Stream s has windows at 1, 6, 11, 16 (16 + 5 - 1 = 20 < 23), queued as they completed.
  data, (streams, starts) = replay.sample_train(6, length)
  got = [divmod(int(i), 1_000_000) for i in data['id'][:, 0]]
  assert got[:6] == [(0, 1), (1, 1), (0, 6), (1, 6), (0, 11), (1, 11)]
  np.testing.assert_array_equal(streams, [s for s, _ in got])
  np.testing.assert_array_equal(starts, [i for _, i in got])
  data, _ = replay.sample_train(3, length)
  got = [divmod(int(i), 1_000_000) for i in data['id'][:, 0]]
  assert got[:2] == [(0, 16), (1, 16)]   # the queue runs dry, then uniform windows
  assert not replay._queue
  # Plain `sample` (reports) never takes from the queue.
  for i in (23, 24, 25):   # index 25 completes the window at 21
    replay.add(_episodes(1, 0, np.random.default_rng(0), image=False)[0] | {'id': np.int64(i)}, 0)
  assert len(replay._queue) == 1
  replay.sample(4, length)
  assert len(replay._queue) == 1


def test_update_writes_into_the_sampled_windows_and_skips_evicted_steps():
  replay = Replay(ReplayConfig(capacity=24, chunk=4), None, seed=2)
  for i in range(20):
    replay.add({'id': np.int64(i), 'latent': np.zeros(2, np.float32)}, 0)
  data, where = replay.sample_train(8, 6)
  values = {'latent': np.stack([np.stack([np.full(2, 100 * b + t, np.float32)
                                          for t in range(5)]) for b in range(8)])}
  replay.update(where, 1, values)   # the 5 steps after each window's first
  stored = replay.sample(1, 20)
  assert stored['id'][0, 0] == 0
  expected = {}
  for b in range(8):
    for t in range(5):
      expected[int(data['id'][b, 1 + t])] = 100 * b + t   # a later window wins on overlap
  for i, value in expected.items():
    np.testing.assert_array_equal(stored['latent'][0, i], value)
  # Positions are absolute: after eviction a window reaching back before the oldest held
  # step writes only its held part.
  for i in range(20, 32):
    replay.add({'id': np.int64(i), 'latent': np.zeros(2, np.float32)}, 0)
  held = replay.sample(1, len(replay))
  first = int(held['id'][0, 0])
  assert first > 0
  before = held['latent'][0].copy()
  replay.update((np.array([0]), np.array([first - 2])), 0,
                {'latent': np.full((1, 6, 2), 7.0, np.float32)})
  held = replay.sample(1, len(replay))
  np.testing.assert_array_equal(held['latent'][0, :4], 7.0)   # steps first .. first + 3
  np.testing.assert_array_equal(held['latent'][0, 4:], before[4:])


def _add_episodes(replay, lengths, stream=0, open_tail=0):
  """Episodes of the given entry counts (is_first ... is_last), then an unfinished one."""
  index = 0
  for length in list(lengths) + [open_tail]:
    for t in range(length):
      replay.add({'id': np.int64(index), 'is_first': np.bool_(t == 0),
                  'is_last': np.bool_(t == length - 1 and length != open_tail)}, stream)
      index += 1


def test_episode_sampling_is_uniform_over_complete_episodes_longer_than_the_window():
  """V1/V2 reference replay: a uniform complete episode with more entries than the window
  (shorter ones and the unfinished one are never used), then a uniform window inside it."""
  replay = Replay(ReplayConfig(capacity=10_000, chunk=7, sample='episodes'), None, seed=4)
  lengths = [12, 5, 30, 9, 20]          # the 5-entry episode is too short for length 8
  _add_episodes(replay, lengths, open_tail=40)
  starts = np.cumsum([0] + lengths)
  sample = replay.sample(20_000, 8)
  first = sample['id'][:, 0]
  episode = np.searchsorted(starts, first, side='right') - 1
  assert set(episode) == {0, 2, 3, 4}
  assert (sample['id'][:, -1] < starts[episode + 1]).all()   # never past the episode's end
  counts = np.bincount(episode, minlength=5)[[0, 2, 3, 4]]
  assert scipy_stats.chisquare(counts).pvalue > 1e-4, counts   # uniform over episodes
  offsets = first[episode == 2] - starts[2]                       # 23 starts in 30 entries
  assert set(offsets) == set(range(23))
  assert scipy_stats.chisquare(np.bincount(offsets)).pvalue > 1e-4
  assert sample['is_first'][:, 0].all()
  assert replay.starts(8) == (12 - 7) + (30 - 7) + (9 - 7) + (20 - 7)


def test_episode_sampling_prioritizes_ends():
  """V2's prioritize_ends: start = min(randint(n - L + 1 + L), n - L), so the episode's last
  window has probability (L + 1) / (n + 1) and every other one 1 / (n + 1)."""
  replay = Replay(ReplayConfig(capacity=10_000, chunk=16, sample='episodes',
                               prioritize_ends=True), None, seed=5)
  _add_episodes(replay, [30])
  offsets = replay.sample(40_000, 8)['id'][:, 0]
  frequency = np.bincount(offsets, minlength=23) / len(offsets)
  np.testing.assert_allclose(frequency[22], 9 / 31, atol=0.01)
  np.testing.assert_allclose(frequency[:22], 1 / 31, atol=0.004)

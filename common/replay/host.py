"""Uniform sequence replay, one stream per environment, chunked on disk.

The buffer DreamerV3 trains from (Hafner et al. 2023, "Mastering Diverse
Domains through World Models", Appendix: replay): steps are stored as they
arrive, one stream per environment, and training samples fixed-length windows
`[B, T]` uniformly over all valid start positions. Windows may cross episode
boundaries; `is_first` marks where a new episode starts, and the world model
resets its state there. As in the V3 reference (`embodied/core/replay.py`):
  * a sampled window sets `is_last` on every step followed by an `is_first`, so an
    episode cut short (a crashed env worker) still ends before the next begins;
  * `online` (`replay.online`): `sample_train` first returns each fresh,
    non-overlapping window of `length` steps once (a FIFO queue), then uniform ones;
  * `update` writes values (V3's replay-context latents) back into stored steps.
Positions in a stream are absolute step indices that survive eviction.

`sample='episodes'` is the DreamerV1/V2 reference's replay instead (dreamer
`tools.load_episodes`, dreamerv2 `common/replay/host.py` with `ongoing: False`): a
complete episode (from `is_first` to `is_last`) longer than the window is chosen
uniformly over episodes, then a window inside it uniformly; `prioritize_ends`
(V2) adds `length` extra start draws clipped to the last window, so an episode's
end is sampled more often.

Storage:
  * Each stream fills a chunk of `chunk` steps; a full chunk is written to
    `directory` as one `.npz` file (temp file + rename, so a crash never leaves
    a half-written chunk under its final name) by a background thread.
  * `capacity` bounds the steps held in memory: the oldest chunk (over all
    streams) is dropped when the total exceeds it. Files stay on disk.
  * `load()` reads the newest chunks of a directory up to `capacity` (each
    file once, no concatenation, so memory is not doubled) and continues the
    numbering, so a resumed run appends after them. With no adds this is the
    offline mode: load a directory and sample with no environment.

File names: `{counter:010d}-s{stream:04d}-n{length:06d}.npz`, where `counter`
orders chunks globally; chunks of one stream are contiguous in that order.
"""
import collections
import concurrent.futures
import dataclasses
import logging as _pylogging
import os
import re
import uuid
import zipfile

import numpy as np

_log = _pylogging.getLogger(__name__)

SAMPLE_MODES = ('windows', 'episodes')
_NAME = re.compile(r'^(\d{10})-s(\d{4})-n(\d{6})\.npz$')


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
  capacity: int = 5_000_000   # steps held in memory (all streams); oldest chunks evicted
  chunk: int = 1024           # steps per chunk file (per stream)
  online: bool = False        # train on each fresh window once, first (V3 code: True)
  sample: str = 'windows'     # 'windows' (V3: any window) | 'episodes' (V1/V2: inside episodes)
  prioritize_ends: bool = False  # 'episodes': V2's extra weight on each episode's last window


class _Chunk:
  """Arrays `key -> [n, ...]` of one stream; `length` steps are valid."""
  __slots__ = ('data', 'length', 'counter', 'stream')

  def __init__(self, data, length, counter, stream):
    self.data = data
    self.length = length
    self.counter = counter
    self.stream = stream

  def nbytes(self):
    return sum(value.nbytes for value in self.data.values())


class _Stream:
  """The completed chunks of one environment plus the one being filled."""

  def __init__(self):
    self.chunks = []       # completed chunks, oldest first
    self.current = None    # _Chunk being filled (preallocated arrays)
    self._ends = None      # cached cumulative lengths of `chunks`
    self.evicted = 0       # steps dropped from the front: absolute index of the first held
    self.added = 0         # steps ever added (or loaded): absolute index of the next step
    self.episodes = []     # complete episodes (absolute start, end + 1), oldest first
    self.open_episode = None   # absolute start of the episode being added

  def ends(self):
    if self._ends is None:
      self._ends = np.cumsum([c.length for c in self.chunks], dtype=np.int64)
    return self._ends

  def invalidate(self):
    self._ends = None

  def completed_steps(self):
    ends = self.ends()
    return int(ends[-1]) if len(ends) else 0

  def steps(self):
    return self.completed_steps() + (self.current.length if self.current else 0)

  def views(self):
    """Chunks to read from, oldest first, and their end offsets."""
    ends = self.ends()
    if self.current is not None and self.current.length:
      total = int(ends[-1]) if len(ends) else 0
      return self.chunks + [self.current], np.append(ends, total + self.current.length)
    return self.chunks, ends


class Replay:
  """Sequence replay: `add(step, stream)`, `sample(batch, length)`, chunked on disk.

  Args:
    config: `ReplayConfig`.
    directory: where chunk files are written (and `load()` reads); None keeps
      the replay in memory only.
    seed: seed of the sampling RNG.
    length: steps of a training window; needed for `config.online`.
  """

  def __init__(self, config=ReplayConfig(), directory=None, seed=0, length=None):
    if not isinstance(config, ReplayConfig):
      raise TypeError(f'config: expected a ReplayConfig, got {type(config).__name__}.')
    if config.capacity < 1:
      raise ValueError(f'replay.capacity={config.capacity}: must be at least 1 step.')
    if config.chunk < 1:
      raise ValueError(f'replay.chunk={config.chunk}: must be at least 1 step.')
    if config.sample not in SAMPLE_MODES:
      raise ValueError(f'replay.sample={config.sample!r}: use one of {SAMPLE_MODES}.')
    if config.online and not (length and length >= 1):
      raise ValueError('replay.online: the replay needs the training window length '
                       f'(length >= 1), got {length!r}.')
    self.length = length
    self._queue = collections.deque()   # (stream, absolute start) of fresh windows
    self.config = config
    self.directory = directory and os.fspath(directory)
    self._rng = np.random.default_rng(seed)
    self._streams = {}
    self._spec = None          # key -> (shape, dtype)
    self._counter = 0          # next chunk number
    self._steps = 0            # steps currently held
    self._added = 0            # steps ever added by this process
    self._order = []           # completed chunks in eviction order (oldest first)
    self._order_start = 0
    self._writer = None
    self._pending = []
    if self.directory:
      os.makedirs(self.directory, exist_ok=True)
      self._writer = concurrent.futures.ThreadPoolExecutor(1, 'replay-writer')

  # --- adding -----------------------------------------------------------------

  def add(self, step, stream=0):
    """Adds one environment step (no batch axis, including `action`) to `stream`."""
    if not isinstance(step, dict):
      raise TypeError(f'step: expected a dict of arrays, got {type(step).__name__}.')
    step = {key: np.asarray(value) for key, value in step.items()}
    if self._spec is None:
      self._spec = {key: (value.shape, value.dtype) for key, value in step.items()}
    self._check_step(step)
    target = self._streams.get(stream)
    if target is None:
      target = self._streams[stream] = _Stream()
    if target.current is None:
      data = {key: np.empty((self.config.chunk,) + shape, dtype)
              for key, (shape, dtype) in self._spec.items()}
      target.current = _Chunk(data, 0, None, stream)
    current = target.current
    for key, value in step.items():
      current.data[key][current.length] = value
    current.length += 1
    index = target.added
    target.added += 1
    self._steps += 1
    self._added += 1
    self._track_episode(target, index, step)
    # The reference queues the window that ends with this step when its index is a
    # multiple of the length: windows start at 1, L + 1, 2L + 1, ... of each stream.
    if self.config.online and index >= self.length and index % self.length == 0:
      self._queue.append((stream, index - self.length + 1))
    if current.length == self.config.chunk:
      self._complete(target)
    self._evict()

  @staticmethod
  def _track_episode(target, index, step):
    if 'is_first' in step and step['is_first']:
      target.open_episode = index
    if 'is_last' in step and step['is_last'] and target.open_episode is not None:
      target.episodes.append((target.open_episode, index + 1))
      target.open_episode = None

  def _check_step(self, step):
    if set(step) != set(self._spec):
      missing = sorted(set(self._spec) - set(step))
      extra = sorted(set(step) - set(self._spec))
      raise ValueError(f'step: keys differ from earlier steps (missing {missing}, '
                       f'unexpected {extra}); every step must carry the same keys.')
    for key, value in step.items():
      shape, dtype = self._spec[key]
      if value.shape != shape:
        raise ValueError(f'step[{key!r}]: shape {value.shape}, expected {shape} '
                         f'(one env step, no batch axis).')

  def _complete(self, target):
    """Moves the stream's current chunk to its completed chunks and writes it."""
    current = target.current
    target.current = None
    if current.length < self.config.chunk:
      current.data = {key: value[:current.length].copy() for key, value in current.data.items()}
    current.counter = self._counter
    self._counter += 1
    target.chunks.append(current)
    target.invalidate()
    self._order.append(current)
    if self._writer is not None:
      self._pending.append(self._writer.submit(self._write, current))
      for future in [f for f in self._pending if f.done()]:
        future.result()  # re-raises a failed write here, not silently later
      self._pending = [future for future in self._pending if not future.done()]

  def _evict(self):
    while self._steps > self.config.capacity and self._order_start < len(self._order):
      chunk = self._order[self._order_start]
      self._order[self._order_start] = None
      self._order_start += 1
      target = self._streams[chunk.stream]
      if not target.chunks or target.chunks[0] is not chunk:
        continue  # already gone
      target.chunks.pop(0)
      target.invalidate()
      target.evicted += chunk.length
      self._steps -= chunk.length
    if self._order_start > 1024 and self._order_start * 2 > len(self._order):
      self._order = self._order[self._order_start:]
      self._order_start = 0

  def _write(self, chunk):
    name = f'{chunk.counter:010d}-s{chunk.stream:04d}-n{chunk.length:06d}.npz'
    path = os.path.join(self.directory, name)
    temp = os.path.join(self.directory, f'.{name}.{uuid.uuid4().hex}.tmp')
    with open(temp, 'wb') as file:
      np.savez(file, **chunk.data)
      file.flush()
      os.fsync(file.fileno())
    os.replace(temp, path)

  def save(self):
    """Writes every partly filled chunk and waits until all chunks are on disk."""
    for target in self._streams.values():
      if target.current is not None and target.current.length:
        self._complete(target)
    for future in self._pending:
      future.result()
    self._pending = []

  def close(self):
    self.save()
    if self._writer is not None:
      self._writer.shutdown(wait=True)
      self._writer = None

  # --- loading ----------------------------------------------------------------

  def load(self, directory=None):
    """Loads the newest chunks of `directory` (default: this replay's) up to capacity.

    A corrupt chunk that is the newest of its stream (a crash while writing)
    is skipped with a warning; a corrupt chunk elsewhere raises, naming the file.
    Returns the number of steps loaded.
    """
    directory = os.fspath(directory or self.directory or '')
    if self._steps:
      raise RuntimeError('Replay.load() must come before any add(); this replay already '
                         f'holds {self._steps} steps.')
    if not directory or not os.path.isdir(directory):
      raise FileNotFoundError(f'replay directory {directory!r} does not exist; '
                              f'pass a directory written by a previous run.')
    entries = []
    for name in os.listdir(directory):
      match = _NAME.match(name)
      if match:
        entries.append(tuple(int(x) for x in match.groups()) + (name,))
      elif name.endswith('.tmp'):
        _log.warning('Replay: skipping half-written chunk %s (a crash while saving).',
                     os.path.join(directory, name))
    entries.sort()
    newest_of_stream = {}
    for counter, stream, _, _ in entries:
      newest_of_stream[stream] = counter
    # Newest first, until the capacity is reached.
    chosen, total = [], 0
    for entry in reversed(entries):
      if total + entry[2] > self.config.capacity and chosen:
        break
      chosen.append(entry)
      total += entry[2]
    chosen.reverse()
    loaded = 0
    for counter, stream, length, name in chosen:
      path = os.path.join(directory, name)
      try:
        with np.load(path) as file:
          data = {key: file[key] for key in file.files}
        lengths = {len(value) for value in data.values()}
        if lengths != {length}:
          raise ValueError(f'arrays of lengths {sorted(lengths)}, file name says {length}')
      except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as error:
        if newest_of_stream[stream] == counter:
          _log.warning('Replay: skipping corrupt last chunk of stream %d: %s (%s).',
                       stream, path, error)
          continue
        raise ValueError(
            f'Replay chunk {path} is corrupt ({error}); it is not the newest chunk of its '
            f'stream, so skipping it would silently join unrelated data. Move it out of '
            f'the directory (or delete it) to load the rest.') from error
      spec = {key: (value.shape[1:], value.dtype) for key, value in data.items()}
      if self._spec is None:
        self._spec = spec
      elif spec != self._spec:
        raise ValueError(f'Replay chunk {path} has keys/shapes {spec}, but this replay '
                         f'holds {self._spec}; load replays of one environment only.')
      target = self._streams.get(stream)
      if target is None:
        target = self._streams[stream] = _Stream()
      chunk = _Chunk(data, length, counter, stream)
      target.chunks.append(chunk)
      target.invalidate()
      for i in range(length):
        self._track_episode(target, target.added + i,
                            {k: data[k][i] for k in ('is_first', 'is_last') if k in data})
      target.added += length
      self._order.append(chunk)
      self._steps += length
      loaded += length
    if entries:
      self._counter = max(self._counter, entries[-1][0] + 1)
    self._evict()
    return loaded

  # --- sampling ---------------------------------------------------------------

  def __len__(self):
    return self._steps

  def starts(self, length):
    """Number of windows of `length` steps that `sample` can draw from."""
    if self.config.sample == 'episodes':
      return int(sum(end - start - length + 1 for _, start, end in self._episodes(length)))
    return sum(max(0, target.steps() - length + 1) for target in self._streams.values())

  def _episodes(self, length):
    """(stream, absolute start, end) of the held complete episodes longer than `length`."""
    found = []
    for stream, target in self._streams.items():
      while target.episodes and target.episodes[0][0] < target.evicted:
        target.episodes.pop(0)   # its first steps were evicted
      found += [(stream, start, end) for start, end in target.episodes if end - start > length]
    return found

  def sample(self, batch, length):
    """Uniformly sampled windows: dict of `[batch, length, ...]` arrays.

    Every valid start (a position followed by `length - 1` steps of the same
    stream) has equal probability.
    """
    return self._sample(batch, length, queue=False)[0]

  def sample_train(self, batch, length):
    """Training windows: fresh ones from the online queue first (when `online`), then
    uniform ones. Returns (data [batch, length, ...], where) for `update(where, ...)`."""
    return self._sample(batch, length, queue=self.config.online)

  def update(self, where, offset, values):
    """Writes `values` {key: [B, L, ...]} into the steps `offset .. offset + L - 1` of the
    windows `where` (from `sample_train`). Steps evicted since are skipped."""
    streams, starts = where
    for b, (stream, start) in enumerate(zip(streams, starts)):
      target = self._streams.get(int(stream))
      if target is None:
        continue
      chunks, ends = target.views()
      length = len(next(iter(values.values()))[b])
      position = int(start) + offset - target.evicted
      done = 0
      if position < 0:
        done = -position
        position = 0
      i = int(np.searchsorted(ends, position, side='right'))
      while done < length and i < len(chunks):
        chunk = chunks[i]
        begin = position - (int(ends[i]) - chunk.length)
        take = min(length - done, chunk.length - begin)
        for key, value in values.items():
          chunk.data[key][begin:begin + take] = value[b, done:done + take]
        done += take
        position += take
        i += 1

  def _sample(self, batch, length, queue):
    if batch < 1 or length < 1:
      raise ValueError(f'sample(batch={batch}, length={length}): both must be positive.')
    ids = list(self._streams)
    streams = [self._streams[i] for i in ids]
    valid = np.array([max(0, s.steps() - length + 1) for s in streams], np.int64)
    total = int(valid.sum())
    if total == 0:
      longest = max([s.steps() for s in streams], default=0)
      raise ValueError(
          f'Replay cannot sample length={length}: its longest stream holds {longest} steps. '
          f'Collect more steps first (run.prefill) or lower run.batch_length.')
    chosen = []   # (stream id, relative start)
    while queue and self._queue and len(chosen) < batch:
      stream, start = self._queue.popleft()
      target = self._streams.get(stream)
      position = start - target.evicted if target else -1
      if 0 <= position and position + length <= target.steps():
        chosen.append((stream, position))
    if self.config.sample == 'episodes':
      chosen += self._episode_windows(batch - len(chosen), length)
    else:
      index = self._rng.integers(0, total, size=batch - len(chosen))
      bounds = np.cumsum(valid)
      which = np.searchsorted(bounds, index, side='right')
      starts = index - (bounds[which] - valid[which])
      chosen += [(ids[w], int(p)) for w, p in zip(which, starts)]
    out = {key: np.empty((batch, length) + shape, dtype)
           for key, (shape, dtype) in self._spec.items()}
    cache = {}
    for b, (stream, position) in enumerate(chosen):
      if stream not in cache:
        cache[stream] = self._streams[stream].views()
      chunks, ends = cache[stream]
      i = int(np.searchsorted(ends, position, side='right'))
      filled = 0
      while filled < length:
        chunk = chunks[i]
        begin = position - (int(ends[i]) - chunk.length)
        take = min(length - filled, chunk.length - begin)
        for key in out:
          out[key][b, filled:filled + take] = chunk.data[key][begin:begin + take]
        filled += take
        position += take
        i += 1
    if 'is_first' in out and self.config.sample == 'episodes':
      out['is_first'][:, 0] = True   # a window inside an episode starts the model afresh
    if 'is_first' in out and 'is_last' in out:
      # An episode followed by a new one inside the window ends there (cut episodes).
      out['is_last'][:, :-1] |= out['is_first'][:, 1:].astype(out['is_last'].dtype)
    where = (np.array([c[0] for c in chosen], np.int64),
             np.array([c[1] + self._streams[c[0]].evicted for c in chosen], np.int64))
    return out, where

  def _episode_windows(self, count, length):
    """(stream, relative start) of `count` windows: a uniform episode, then a start in it."""
    episodes = self._episodes(length)
    if not episodes:
      raise ValueError(f'Replay holds no complete episode longer than length={length} to '
                       'sample from (replay.sample=episodes); collect more first.')
    chosen = []
    for which in self._rng.integers(0, len(episodes), size=count):
      stream, start, end = episodes[which]
      upper = end - start - length + 1
      if self.config.prioritize_ends:
        upper += length
      offset = min(int(self._rng.integers(0, upper)), end - start - length)
      chosen.append((stream, start + offset - self._streams[stream].evicted))
    return chosen

  # --- bookkeeping ------------------------------------------------------------

  def stats(self):
    """Steps held, memory in bytes/GB, chunks, streams, steps added by this process."""
    nbytes = 0
    chunks = 0
    for target in self._streams.values():
      nbytes += sum(c.nbytes() for c in target.chunks)
      chunks += len(target.chunks)
      if target.current is not None:
        nbytes += target.current.nbytes()
    return {'steps': self._steps, 'bytes': nbytes, 'gb': nbytes / 2 ** 30,
            'chunks': chunks, 'streams': len(self._streams), 'added': self._added,
            'next_chunk': self._counter}

"""Uniform sequence replay held on the device, as pure functions (for `--loop device`).

The same sampling as the host replay (`common/replay/host.py`, DreamerV3's): one stream per
environment, windows of `length` steps drawn uniformly over every valid start, windows may
cross episode boundaries (`is_first` marks the starts, and a step followed by an `is_first`
inside a window gets `is_last`), the optional online queue (`online`: each fresh,
non-overlapping window of the window length once, first), and `update` writing values (V3's
replay-context latents) back into stored steps. With `episodes` (the DreamerV1/V2
references' sampling, host replay `sample='episodes'`): a complete held episode longer than the
window is drawn uniformly, then a window inside it uniformly (`prioritize_ends`: DreamerV2's
extra weight on its last window), from a table of each stream's finished episodes.

Storage: each of the N streams is a ring of `capacity // N` steps (`capacity` counts all
streams, as `replay.capacity`); all streams advance together (the envs step in lockstep),
so one counter `added` says how many steps every stream has seen. The absolute step `i` of
a stream lives in slot `i % size`; the oldest held is `added - held`. Every function is
jittable and takes one replay; the device loop vmaps them over seeds.
"""
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np


class DeviceReplay(NamedTuple):
  data: dict          # key -> [N, size, ...]
  added: jax.Array    # int32: steps added to every stream
  queue: jax.Array    # int32: online windows handed out (in queue order)
  # With episode sampling: each stream's finished episodes as a ring of (start, end) absolute
  # steps (end exclusive), how many have finished, and where the open one began (-1: none).
  episodes: Optional[dict] = None


def stream_size(capacity: int, streams: int) -> int:
  size = int(capacity) // int(streams)
  if size < 1:
    raise ValueError(f'replay.capacity={capacity} holds less than one step for each of '
                     f'{streams} envs; raise it.')
  return size


def nbytes(spec: dict, streams: int, size: int) -> int:
  """Bytes the replay holds: `spec` is key -> (shape, dtype) of one step."""
  return sum(streams * size * int(np.prod(shape)) * np.dtype(dtype).itemsize
             for shape, dtype in spec.values())


def init(spec: dict, streams: int, size: int, episodes: bool = False) -> DeviceReplay:
  data = {key: jnp.zeros((streams, size) + tuple(shape), dtype)
          for key, (shape, dtype) in spec.items()}
  table = None
  if episodes:
    # An episode spans at least two steps (a reset is never last), so size // 2 + 1 entries
    # hold every episode the ring can.
    entries = size // 2 + 1
    table = {'start': jnp.zeros((streams, entries), jnp.int32),
             'end': jnp.zeros((streams, entries), jnp.int32),
             'count': jnp.zeros((streams,), jnp.int32),
             'open': jnp.full((streams,), -1, jnp.int32)}
  return DeviceReplay(data, jnp.int32(0), jnp.int32(0), table)


def add(replay: DeviceReplay, step: dict) -> DeviceReplay:
  """Appends one step `{key: [N, ...]}` to every stream."""
  size = next(iter(replay.data.values())).shape[1]
  slot = replay.added % size
  data = {key: value.at[:, slot].set(step[key].astype(value.dtype))
          for key, value in replay.data.items()}
  table = replay.episodes
  if table is not None:
    index = replay.added
    opened = jnp.where(step['is_first'].astype(bool), index, table['open'])
    close = step['is_last'].astype(bool) & (opened >= 0)
    rows = jnp.arange(opened.shape[0])
    entry = table['count'] % table['start'].shape[1]
    table = {'start': table['start'].at[rows, entry].set(
                 jnp.where(close, opened, table['start'][rows, entry])),
             'end': table['end'].at[rows, entry].set(
                 jnp.where(close, index + 1, table['end'][rows, entry])),
             'count': table['count'] + close.astype(jnp.int32),
             'open': jnp.where(close, -1, opened)}
  return replay._replace(data=data, added=replay.added + 1, episodes=table)


def _episode_mask(replay, length):
  """[N, E]: finished episodes whose first step is held and that are longer than `length`."""
  table = replay.episodes
  _, oldest, _ = _held(replay)
  entries = table['start'].shape[1]
  written = jnp.arange(entries)[None] < jnp.minimum(table['count'], entries)[:, None]
  return written & (table['start'] >= oldest) & (table['end'] - table['start'] > length)


def _held(replay):
  size = next(iter(replay.data.values())).shape[1]
  held = jnp.minimum(replay.added, size)
  return held, replay.added - held, size


def starts(replay: DeviceReplay, length: int) -> jax.Array:
  """Number of windows of `length` steps that `sample` can draw from (all streams)."""
  if replay.episodes is not None:
    table = replay.episodes
    inside = table['end'] - table['start'] - length + 1
    return jnp.sum(jnp.where(_episode_mask(replay, length), inside, 0))
  streams = next(iter(replay.data.values())).shape[0]
  held, _, _ = _held(replay)
  return streams * jnp.maximum(0, held - length + 1)


def sample(replay: DeviceReplay, key, batch: int, length: int, online: bool = False,
           prioritize_ends: bool = False):
  """`(windows {key: [batch, length, ...]}, where, replay)`; `where` = (streams, absolute
  starts) for `update`. The replay must hold a window (`starts(...) > 0`); with `online` the
  returned replay has the queue advanced."""
  streams = next(iter(replay.data.values())).shape[0]
  held, oldest, _ = _held(replay)
  if replay.episodes is not None:
    return _sample_episodes(replay, key, batch, length, prioritize_ends)
  per_stream = jnp.maximum(1, held - length + 1)
  index = jax.random.randint(key, (batch,), 0, streams * per_stream)
  stream = index // per_stream
  start = oldest + index % per_stream
  queue = replay.queue
  if online:
    # Window k of every stream covers steps k * length + 1 .. (k + 1) * length (the
    # reference queues it when step (k + 1) * length arrives); queue order is k, then stream.
    # Windows whose first step was evicted are skipped.
    available = streams * jnp.maximum(0, (replay.added - 1) // length)
    first_held = streams * ((jnp.maximum(oldest - 1, 0) + length - 1) // length)
    queue = jnp.maximum(queue, first_held)
    fresh = jnp.clip(available - queue, 0, batch)
    position = queue + jnp.arange(batch)
    use = jnp.arange(batch) < fresh
    stream = jnp.where(use, position % streams, stream)
    start = jnp.where(use, (position // streams) * length + 1, start)
    queue = queue + fresh
  return _gather(replay, stream, start, length), (stream, start), replay._replace(queue=queue)


def _sample_episodes(replay, key, batch, length, prioritize_ends):
  """The host replay's `_episode_windows`: a uniform episode, then a start inside it."""
  table = replay.episodes
  entries = table['start'].shape[1]
  episode_key, offset_key = jax.random.split(key)
  logits = jnp.where(_episode_mask(replay, length), 0.0, -jnp.inf).reshape(-1)
  which = jax.random.categorical(episode_key, logits, shape=(batch,))
  stream, entry = which // entries, which % entries
  first, end = table['start'][stream, entry], table['end'][stream, entry]
  upper = end - first - length + 1 + (length if prioritize_ends else 0)
  offset = jnp.minimum(jax.random.randint(offset_key, (batch,), 0, upper), end - first - length)
  start = first + offset
  out = _gather(replay, stream, start, length)
  out['is_first'] = out['is_first'].at[:, 0].set(True)   # the model starts afresh
  return out, (stream, start), replay


def _gather(replay, stream, start, length):
  size = next(iter(replay.data.values())).shape[1]
  slots = (start[:, None] + jnp.arange(length)[None]) % size
  out = {key: value[stream[:, None], slots] for key, value in replay.data.items()}
  if 'is_first' in out and 'is_last' in out:
    follows = jnp.zeros_like(out['is_last']).at[:, :-1].set(
        out['is_first'][:, 1:].astype(out['is_last'].dtype))
    out['is_last'] = out['is_last'] | follows
  return out


def update(replay: DeviceReplay, where, offset: int, values: dict) -> DeviceReplay:
  """Writes `values` {key: [B, L, ...]} into steps `offset .. offset + L - 1` of the windows
  `where` (from `sample`); steps evicted since are left alone."""
  stream, start = where
  _, oldest, size = _held(replay)
  length = next(iter(values.values())).shape[1]
  position = start[:, None] + offset + jnp.arange(length)[None]
  keep = position >= oldest
  slots = position % size
  data = dict(replay.data)
  for key, value in values.items():
    old = data[key][stream[:, None], slots]
    mask = keep.reshape(keep.shape + (1,) * (value.ndim - 2))
    data[key] = data[key].at[stream[:, None], slots].set(
        jnp.where(mask, value.astype(old.dtype), old))
  return replay._replace(data=data)

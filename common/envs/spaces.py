"""`Space`: dtype, shape and bounds of one observation entry or of the action."""
import numpy as np


class Space:
  """A box of `dtype` values of `shape` within [low, high] (inclusive).

  Discrete actions are `Space(np.int32, (), 0, n - 1)`: `.discrete` is True and
  `.n` is the number of actions. Continuous actions are float32 `[A]` in [-1, 1].
  Observation entries use the same class (images uint8 [H, W, C] in [0, 255]).
  """

  def __init__(self, dtype, shape=(), low=None, high=None):
    self.dtype = np.dtype(dtype)
    self.shape = tuple(int(s) for s in shape)
    if low is None:
      low = _dtype_min(self.dtype)
    if high is None:
      high = _dtype_max(self.dtype)
    self.low = np.broadcast_to(np.asarray(low, self.dtype), self.shape)
    self.high = np.broadcast_to(np.asarray(high, self.dtype), self.shape)

  @property
  def discrete(self) -> bool:
    return np.issubdtype(self.dtype, np.integer) or self.dtype == np.bool_

  @property
  def n(self) -> int:
    """Number of discrete values of a scalar integer space."""
    if not self.discrete or self.shape != ():
      raise ValueError(f'Space.n is only defined for scalar discrete spaces, not {self}.')
    return int(self.high) - int(self.low) + 1

  def sample(self, rng: np.random.Generator = None) -> np.ndarray:
    """A uniform random value (finite bounds), used for random-policy prefill."""
    rng = rng or np.random.default_rng()
    if self.dtype == np.bool_:
      return rng.integers(0, 2, self.shape).astype(bool)
    if self.discrete:
      return rng.integers(self.low, self.high.astype(np.int64) + 1, self.shape).astype(self.dtype)
    low = np.maximum(self.low, -1e6)
    high = np.minimum(self.high, 1e6)
    return rng.uniform(low, high, self.shape).astype(self.dtype)

  def contains(self, value) -> bool:
    value = np.asarray(value)
    if value.shape != self.shape:
      return False
    if self.discrete and not (np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_):
      return False
    return bool(np.all(value >= self.low) and np.all(value <= self.high))

  def __eq__(self, other):
    return (isinstance(other, Space) and self.dtype == other.dtype and self.shape == other.shape
            and np.array_equal(self.low, other.low) and np.array_equal(self.high, other.high))

  def __repr__(self):
    low, high = self.low, self.high
    if self.shape and np.all(low == low.flat[0]) and np.all(high == high.flat[0]):
      low, high = low.flat[0], high.flat[0]
    return f'Space({self.dtype.name}, shape={self.shape}, low={low}, high={high})'


def _dtype_min(dtype):
  if dtype == np.bool_:
    return False
  if np.issubdtype(dtype, np.integer):
    return np.iinfo(dtype).min
  return -np.inf


def _dtype_max(dtype):
  if dtype == np.bool_:
    return True
  if np.issubdtype(dtype, np.integer):
    return np.iinfo(dtype).max
  return np.inf


def check_action(space: Space, action, name: str = 'action') -> np.ndarray:
  """Validates one env's action against `space`; returns it as `space.dtype`.

  Raises ValueError naming `name`, the expected space and the fix.
  """
  value = np.asarray(action)
  if space.discrete:
    if value.shape != space.shape:
      raise ValueError(f'{name} has shape {value.shape}, expected {space.shape} (an int index '
                       f'in [0, {space.n - 1}]).')
    if not np.issubdtype(value.dtype, np.integer):
      if not np.issubdtype(value.dtype, np.floating) or value != np.round(value):
        raise ValueError(f'{name} = {value!r} is not an integer index for {space}.')
    if not (space.low <= value <= space.high):
      raise ValueError(f'{name} = {int(value)} is out of range; expected an index in '
                       f'[{int(space.low)}, {int(space.high)}].')
    return value.astype(space.dtype)
  if value.shape != space.shape:
    raise ValueError(f'{name} has shape {value.shape}, expected {space.shape} for {space}.')
  if not np.all(np.isfinite(value)):
    raise ValueError(f'{name} contains NaN or inf: {value}.')
  tolerance = 1e-5
  if np.any(value < space.low - tolerance) or np.any(value > space.high + tolerance):
    raise ValueError(f'{name} = {value} is out of range [{space.low.min()}, {space.high.max()}]; '
                     'continuous actions must lie in [-1, 1] (clip them in the policy).')
  return np.clip(value, space.low, space.high).astype(space.dtype)


def check_actions(space: Space, actions, num: int, name: str = 'action') -> np.ndarray:
  """Validates a batch of actions `[num, *space.shape]`."""
  value = np.asarray(actions)
  if value.shape[:1] != (num,) or value.shape[1:] != space.shape:
    raise ValueError(f'{name} has shape {value.shape}, expected {(num,) + space.shape} '
                     f'(one action per env for {num} envs, space {space}).')
  return np.stack([check_action(space, value[i], f'{name}[{i}]') for i in range(num)])

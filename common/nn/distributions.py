"""Output distributions of the world models and actors (PlaNet, DreamerV1/V2/V3).

Every class has `log_prob(x)` and `mode()`, and `sample(key)` / `entropy()` where
they mean something. Event dimensions are reduced inside `log_prob`/`entropy`:
`dims` is the number of trailing axes summed (for `OneHotCategorical`, the number of
axes summed in addition to the class axis). Distrax provides Normal, Bernoulli,
Independent and the Tanh bijector; the rest are thin wrappers written here.
The objects are plain Python holders of arrays: build them inside the jitted
function, do not pass them across a jit boundary.
"""
import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np

from common.nn import math as cmath


def _check_dims(name, array, dims, extra=0):
  if not isinstance(dims, int) or dims < 0:
    raise ValueError(f'{name}: dims must be a non-negative int, got {dims!r}.')
  if array.ndim < dims + extra:
    raise ValueError(
        f'{name}: input of shape {array.shape} has fewer than dims={dims}'
        f'{" + 1 class axis" if extra else ""} axes; pass a smaller dims or add axes.')


def _sum_last(x, dims):
  return x.sum(tuple(range(x.ndim - dims, x.ndim))) if dims else x


def unimix_logits(logits: chex.Array, unimix: float) -> chex.Array:
  """Mix a categorical with the uniform distribution (DreamerV3, Sec. 2 "unimix").

  p = (1 - unimix) * softmax(logits) + unimix / C; returns log p, shape [..., C].
  With unimix == 0 the logits are only normalised (log_softmax).
  """
  logits = jnp.asarray(logits)
  if logits.ndim < 1:
    raise ValueError(f'unimix_logits: `logits` must be [..., C], got shape {logits.shape}.')
  if not 0.0 <= float(unimix) <= 1.0:
    raise ValueError(f'unimix_logits: unimix must be in [0, 1], got {unimix}.')
  if unimix == 0.0:
    return jax.nn.log_softmax(logits, -1)
  probs = jax.nn.softmax(logits, -1)
  probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
  return jnp.log(probs)


class OneHotCategorical:
  """Categorical over one-hot vectors with straight-through samples (DreamerV2, Eq. 7 / Alg. 1).

  logits: [..., C], or [..., S, C] with dims=1 for S independent categoricals (the
  RSSM's 32x32 latent). `unimix` mixes in a uniform distribution (V3: 0.01).
  sample(key) and mode() return float one-hot vectors [..., C] whose gradient is
  the identity on the probabilities: onehot + probs - stop_gradient(probs).
  log_prob(x) and entropy() sum the class axis and `dims` more axes -> [...].
  """

  def __init__(self, logits: chex.Array, unimix: float = 0.0, dims: int = 0):
    _check_dims('OneHotCategorical', logits, dims, extra=1)
    self.logits = unimix_logits(logits, unimix)  # normalised log-probs
    self.dims = dims

  @property
  def probs(self):
    return jax.nn.softmax(self.logits, -1)

  def _straight_through(self, onehot):
    probs = self.probs
    # Parenthesised so the forward value is exactly one-hot (probs - probs == 0).
    return onehot + (probs - jax.lax.stop_gradient(probs))

  def sample(self, key: chex.PRNGKey) -> chex.Array:
    index = jax.random.categorical(key, self.logits, -1)
    onehot = jax.nn.one_hot(index, self.logits.shape[-1], dtype=self.logits.dtype)
    return self._straight_through(onehot)

  def mode(self) -> chex.Array:
    index = jnp.argmax(self.logits, -1)
    onehot = jax.nn.one_hot(index, self.logits.shape[-1], dtype=self.logits.dtype)
    return self._straight_through(onehot)

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.logits.shape, custom_message=(
        'OneHotCategorical.log_prob: `x` must be one-hot with the shape of the logits.'))
    return _sum_last((x * self.logits).sum(-1), self.dims)

  def entropy(self) -> chex.Array:
    return _sum_last(-(self.probs * self.logits).sum(-1), self.dims)


class Normal:
  """Diagonal Gaussian N(mean, std^2) with `dims` trailing event axes (PlaNet / DreamerV1 latents).

  mean, std: the same shape [..., *event]. sample(key) is reparameterised.
  log_prob/entropy -> [...] (the last `dims` axes summed).
  """

  def __init__(self, mean: chex.Array, std: chex.Array, dims: int = 0):
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    chex.assert_equal_shape([mean, std], custom_message='Normal: `mean` and `std` must share a shape.')
    _check_dims('Normal', mean, dims)
    self.dims = dims
    self._dist = distrax.Independent(distrax.Normal(mean, std), dims)

  @property
  def mean(self):
    return self._dist.distribution.loc

  @property
  def std(self):
    return self._dist.distribution.scale

  def sample(self, key: chex.PRNGKey) -> chex.Array:
    return self._dist.sample(seed=key)

  def mode(self) -> chex.Array:
    return self.mean

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.mean.shape, custom_message='Normal.log_prob: `x` must have the shape of `mean`.')
    return self._dist.log_prob(x)

  def entropy(self) -> chex.Array:
    return self._dist.entropy()


class TanhNormal:
  """tanh(u), u ~ N(mean, std^2): DreamerV1's continuous actor (Hafner et al. 2020, Sec. 3 / App. A).

  mean, std: [..., A]; the last `dims` (default 1: the action axis) are event axes.
  log_prob(x) includes the tanh change of variables; x is clipped to +/-(1 - 1e-6)
  so actions at the bounds stay finite. mode() = tanh(mean), the usual deterministic
  stand-in; sample_mode(key) is V1's reference mode, the most likely of 100 samples.
  entropy() is the entropy of the base normal, an upper bound on the true entropy
  since tanh contracts volume; entropy_estimate(key, samples) is V1's sample-based
  estimate -E[log p(a)] (its `SampleDist`, 100 samples).
  """

  def __init__(self, mean: chex.Array, std: chex.Array, dims: int = 1):
    mean, std = jnp.asarray(mean), jnp.asarray(std)
    chex.assert_equal_shape([mean, std], custom_message='TanhNormal: `mean` and `std` must share a shape.')
    _check_dims('TanhNormal', mean, dims)
    self.dims = dims
    self._base = distrax.Independent(distrax.Normal(mean, std), dims)
    self._dist = distrax.Transformed(self._base, distrax.Block(distrax.Tanh(), dims))

  @property
  def mean_raw(self):
    return self._base.distribution.loc

  def sample(self, key: chex.PRNGKey) -> chex.Array:
    return self._dist.sample(seed=key)

  def sample_and_log_prob(self, key: chex.PRNGKey, samples: int | None = None):
    """Sample and its log-prob computed on the pre-tanh value (stable at the bounds)."""
    if samples is None:
      return self._dist.sample_and_log_prob(seed=key)
    return self._dist.sample_and_log_prob(seed=key, sample_shape=(samples,))

  def mode(self) -> chex.Array:
    return jnp.tanh(self.mean_raw)

  def sample_mode(self, key: chex.PRNGKey, samples: int = 100) -> chex.Array:
    """The most likely of `samples` samples (DreamerV1 reference, tools.py SampleDist.mode)."""
    values, log_prob = self.sample_and_log_prob(key, samples)      # [S, ...], [S, batch]
    best = jnp.argmax(log_prob, 0)
    best = best.reshape(best.shape + (1,) * self.dims)
    return jnp.take_along_axis(values, best[None], 0)[0]

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.mean_raw.shape, custom_message='TanhNormal.log_prob: `x` must have the shape of `mean`.')
    limit = 1.0 - 1e-6
    return self._dist.log_prob(jnp.clip(x, -limit, limit))

  def entropy(self) -> chex.Array:
    return self._base.entropy()

  def entropy_estimate(self, key: chex.PRNGKey, samples: int = 100) -> chex.Array:
    _, log_prob = self.sample_and_log_prob(key, samples)
    return -log_prob.mean(0)


def bounded_normal(mean: chex.Array, raw_std: chex.Array, min_std: float = 0.1,
                   max_std: float = 1.0, dims: int = 1) -> Normal:
  """DreamerV3's continuous actor head: Normal(tanh(mean), std), std in [min_std, max_std].

  std = (max_std - min_std) * sigmoid(raw_std + 2) + min_std  (DreamerV3 reference code;
  the +2 starts std near max_std). mean, raw_std: [..., A]; dims=1 sums the action axis.
  """
  mean, raw_std = jnp.asarray(mean), jnp.asarray(raw_std)
  chex.assert_equal_shape([mean, raw_std], custom_message='bounded_normal: `mean` and `raw_std` must share a shape.')
  if not 0.0 < min_std <= max_std:
    raise ValueError(f'bounded_normal: need 0 < min_std <= max_std, got {min_std}, {max_std}.')
  std = (max_std - min_std) * jax.nn.sigmoid(raw_std + 2.0) + min_std
  return Normal(jnp.tanh(mean), std, dims)


class TruncNormal:
  """N(loc, scale^2) truncated to [low, high]: DreamerV2's continuous actor ("trunc_normal").

  DreamerV2 reference code: loc = tanh(out), scale = 2 sigmoid((raw + init_std) / 2) + min_std,
  truncated to [-1, 1]; samples are clipped to [low + clip, high - clip] with a straight-through
  gradient (the clip changes the value, not the gradient). loc, scale: [..., A]; the last `dims`
  (default 1) are event axes.

  sample(key) draws z ~ N(0, 1) truncated to [alpha, beta] = [(low - loc) / scale,
  (high - loc) / scale] by inverse CDF and returns loc + scale z with implicit
  reparameterisation gradients (Figurnov et al. 2018): with F(z) = (Phi(z) - Phi(alpha)) / Z,
  dz/dalpha = (1 - F) phi(alpha) / phi(z) and dz/dbeta = F phi(beta) / phi(z). They are computed
  from the drawn z directly, so a draw that lands on a bound gets a finite gradient (the inverse
  CDF's own derivative is infinite there).
  """

  def __init__(self, loc: chex.Array, scale: chex.Array, low: float = -1.0, high: float = 1.0,
               clip: float = 1e-6, dims: int = 1):
    loc, scale = jnp.asarray(loc), jnp.asarray(scale)
    chex.assert_equal_shape([loc, scale], custom_message='TruncNormal: `loc` and `scale` must share a shape.')
    _check_dims('TruncNormal', loc, dims)
    if not low < high or not 0.0 <= clip < (high - low) / 2:
      raise ValueError(f'TruncNormal: need low < high and 0 <= clip < (high - low) / 2, '
                       f'got low={low}, high={high}, clip={clip}.')
    self.loc, self.scale, self.low, self.high, self.clip, self.dims = loc, scale, low, high, clip, dims
    self._alpha = (low - loc) / scale
    self._beta = (high - loc) / scale
    self._log_z = jnp.log(_normal_mass(self._alpha, self._beta))

  def sample(self, key: chex.PRNGKey) -> chex.Array:
    sg = jax.lax.stop_gradient
    alpha, beta = sg(self._alpha), sg(self._beta)
    z = jax.random.truncated_normal(key, alpha, beta, self.loc.shape, self.loc.dtype)
    log_phi = lambda t: -0.5 * t ** 2
    # Implicit gradients, each finite: a factor is 0 exactly where its mass is 0.
    mass_above = _normal_mass(z, beta)
    mass_below = _normal_mass(alpha, z)
    dz_dalpha = jnp.where(mass_above > 0, jnp.exp(
        jnp.log(jnp.maximum(mass_above, 1e-37)) - self._log_z + log_phi(alpha) - log_phi(z)), 0.0)
    dz_dbeta = jnp.where(mass_below > 0, jnp.exp(
        jnp.log(jnp.maximum(mass_below, 1e-37)) - self._log_z + log_phi(beta) - log_phi(z)), 0.0)
    dz_dalpha, dz_dbeta = sg(dz_dalpha), sg(dz_dbeta)
    z = z + dz_dalpha * (self._alpha - alpha) + dz_dbeta * (self._beta - beta)
    x = self.loc + self.scale * z
    clipped = jnp.clip(x, self.low + self.clip, self.high - self.clip)
    return x + sg(clipped - x)

  def mode(self) -> chex.Array:
    return jnp.clip(self.loc, self.low, self.high)

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.loc.shape, custom_message='TruncNormal.log_prob: `x` must have the shape of `loc`.')
    z = (x - self.loc) / self.scale
    log_p = -0.5 * z ** 2 - 0.5 * jnp.log(2 * jnp.pi) - jnp.log(self.scale) - self._log_z
    inside = (x >= self.low) & (x <= self.high)
    return _sum_last(jnp.where(inside, log_p, -jnp.inf), self.dims)

  def entropy(self) -> chex.Array:
    """log(sqrt(2 pi e) scale Z) + (alpha phi(alpha) - beta phi(beta)) / (2 Z), Z = Phi(beta) - Phi(alpha)."""
    phi = lambda t: jnp.exp(-0.5 * t ** 2) / jnp.sqrt(2 * jnp.pi)
    alpha, beta = self._alpha, self._beta
    ent = (0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(self.scale) + self._log_z
           + (alpha * phi(alpha) - beta * phi(beta)) / (2 * jnp.exp(self._log_z)))
    return _sum_last(ent, self.dims)


def _normal_mass(a: chex.Array, b: chex.Array) -> chex.Array:
  """Phi(b) - Phi(a) for a <= b, from whichever tail keeps float32 precision."""
  upper_tail = (a > 0)
  return jnp.where(upper_tail, jax.scipy.special.ndtr(-a) - jax.scipy.special.ndtr(-b),
                   jax.scipy.special.ndtr(b) - jax.scipy.special.ndtr(a))


class Bernoulli:
  """Bernoulli(sigmoid(logits)) over {0, 1} floats (DreamerV2/V3 continue head, Eq. 1).

  log_prob(x) / entropy() sum the last `dims` axes; mode() = 1[logits > 0]; mean = sigmoid.
  """

  def __init__(self, logits: chex.Array, dims: int = 0):
    logits = jnp.asarray(logits)
    _check_dims('Bernoulli', logits, dims)
    self.logits = logits
    self.dims = dims
    self._dist = distrax.Independent(distrax.Bernoulli(logits=logits), dims)

  @property
  def mean(self):
    return jax.nn.sigmoid(self.logits)

  def sample(self, key: chex.PRNGKey) -> chex.Array:
    return self._dist.sample(seed=key).astype(self.logits.dtype)

  def mode(self) -> chex.Array:
    return (self.logits > 0).astype(self.logits.dtype)

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.logits.shape, custom_message='Bernoulli.log_prob: `x` must have the shape of `logits`.')
    x = jnp.asarray(x, self.logits.dtype)
    # Written out (not distrax's) so soft targets in [0, 1] also work.
    log_p = x * jax.nn.log_sigmoid(self.logits) + (1 - x) * jax.nn.log_sigmoid(-self.logits)
    return _sum_last(log_p, self.dims)

  def entropy(self) -> chex.Array:
    return self._dist.entropy()


class MSE:
  """Deterministic decoder "distribution": log_prob(x) = -sum_dims (mean - x)^2 (DreamerV3 decoders).

  Up to constants this is a unit-variance Gaussian (PlaNet/V1/V2 image decoder) times 2.
  """

  def __init__(self, mean: chex.Array, dims: int = 0):
    mean = jnp.asarray(mean)
    _check_dims('MSE', mean, dims)
    self.mean = mean
    self.dims = dims

  def mode(self) -> chex.Array:
    return self.mean

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.mean.shape, custom_message='MSE.log_prob: `x` must have the shape of `mean`.')
    return -_sum_last(jnp.square(self.mean - x), self.dims)


class SymlogMSE:
  """Symlog regression (DreamerV3, Eq. 9): the prediction `mean` lives in symlog space.

  log_prob(x) = -sum_dims (mean - symlog(x))^2 for a raw-space target x; mode() = symexp(mean).
  """

  def __init__(self, mean: chex.Array, dims: int = 0):
    mean = jnp.asarray(mean)
    _check_dims('SymlogMSE', mean, dims)
    self.mean = mean
    self.dims = dims

  def mode(self) -> chex.Array:
    return cmath.symexp(self.mean)

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.mean.shape, custom_message='SymlogMSE.log_prob: `x` must have the shape of `mean`.')
    return -_sum_last(jnp.square(self.mean - cmath.symlog(x)), self.dims)


def _antisymmetric(bins) -> bool:
  """Whether concrete `bins` mirror exactly (b[i] == -b[-1 - i]); False for traced bins."""
  try:
    values = np.asarray(bins)
  except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
    return False
  return bool(np.array_equal(values, -values[::-1]))


class TwoHot:
  """DreamerV3's discrete regression head for rewards and values (Sec. 2, Eq. 10-11).

  Design: targets x are in raw space and `bins` are raw-space centres, by default
  `symexp_bins(K)` (evenly spaced in symlog space). The two-hot encoding is linear in
  raw space, so mean() = sum softmax(logits) * bins needs no final symexp.
    log_prob(x) = sum_k twohot(x)_k * log_softmax(logits)_k, x: [...] -> [...]
    mean() = mode() = sum_k softmax(logits)_k * bins_k -> [...]
  The target is stop-gradient'ed. logits: [..., K].
  """

  def __init__(self, logits: chex.Array, bins: chex.Array | None = None):
    logits = jnp.asarray(logits)
    if logits.ndim < 1:
      raise ValueError(f'TwoHot: `logits` must be [..., K], got shape {logits.shape}.')
    # symexp_bins mirror exactly; other bins are checked while still concrete.
    self._mirrored = bins is None or _antisymmetric(bins)
    if bins is None:
      bins = cmath.symexp_bins(logits.shape[-1])
    bins = jnp.asarray(bins, logits.dtype)
    chex.assert_shape(bins, (logits.shape[-1],), custom_message=(
        'TwoHot: `bins` must be [K] with K = logits.shape[-1].'))
    self.logits = logits
    self.bins = bins

  def mean(self) -> chex.Array:
    probs = jax.nn.softmax(self.logits, -1)
    num = self.bins.shape[0]
    half = num // 2
    middle = (probs[..., half:num - half] * self.bins[half:num - half]).sum(-1)
    low, high = probs[..., :half], probs[..., num - half:]
    if self._mirrored:
      # Mirrored bins b and -b (outer ones ~5e8) enter as (p_high - p_low) * b: a symmetric
      # distribution's mean is exactly zero however XLA orders the sum. Summing the products
      # p * b instead lets XLA re-associate +/-2e6 terms in float32 (0.0159 for a uniform
      # [2, 8, 255] head in one fused program; the reference's own symmetric sum: -0.1675).
      # The barrier keeps XLA from distributing the product back over the difference.
      difference = jax.lax.optimization_barrier(high - low[..., ::-1])
      pairs = (difference * self.bins[num - half:]).sum(-1)
    else:
      pairs = (low * self.bins[:half]).sum(-1) + (high * self.bins[num - half:]).sum(-1)
    return middle + pairs

  def mode(self) -> chex.Array:
    return self.mean()

  def log_prob(self, x: chex.Array) -> chex.Array:
    chex.assert_shape(x, self.logits.shape[:-1], custom_message=(
        'TwoHot.log_prob: `x` must have the shape of logits without the bins axis.'))
    target = jax.lax.stop_gradient(cmath.twohot(x, self.bins))
    return (target * jax.nn.log_softmax(self.logits, -1)).sum(-1)

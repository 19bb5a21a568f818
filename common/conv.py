"""2-D convolution with a weight gradient that XLA's CPU backend runs fast.

XLA CPU computes a convolution's weight gradient as another convolution whose
kernel is the whole output gradient (64x64 for a 64x64 image layer), after
transposing both operands to batch-minor layouts. With the few channels of
DreamerV3's small sizes (4-16 per layer at size1m) that runs at ~3 GFLOP/s,
5-10x slower than the forward pass, and took ~70% of a size1m train step
(BENCHMARKS.md). Here the weight gradient of an NHWC/HWIO convolution with no
dilation and one feature group is written as kh * kw shifted matrix products,

  dW[i, j] = sum_{n, y, x} X_pad[n, s*y + i, s*x + j, :]^T dY[n, y, x, :],

accumulated over chunks of a few images so each chunk's operands stay in cache.
For stride 1 the shifted operand is whichever of X and dY has fewer channels
(the shifted copy is the memory traffic). The forward pass and the input
gradient are XLA's own. Values equal XLA's gradient up to float rounding
(tests/common/test_conv.py checks both against a NumPy loop).

`conv_general_dilated(weight_grad=...)` has `lax.conv_general_dilated`'s
signature, so it plugs into `flax.linen.Conv(conv_general_dilated=...)`;
`weight_grad='auto'` uses the shifted products on the CPU backend only (GPU and
TPU convolution libraries compute weight gradients well).
"""
import functools

import jax
from jax import lax
import jax.numpy as jnp

WEIGHT_GRADS = ('auto', 'xla', 'shift')
_CHUNK = 8  # images per accumulation step: measured fastest among 4, 8, 16 on 2 cores


def _pairs(padding, in_shape, kernel_shape, strides):
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(in_shape, kernel_shape, strides, padding))
  return tuple(tuple(p) for p in padding)


def _chunks(array, chunk):
  """[N, ...] -> [ceil(N / chunk), chunk, ...], zero-padded (zeros add nothing to dW)."""
  extra = -array.shape[0] % chunk
  if extra:
    array = jnp.pad(array, ((0, extra),) + ((0, 0),) * (array.ndim - 1))
  return array.reshape((-1, chunk) + array.shape[1:])


def shifted_weight_grad(x, dy, kernel_hw, strides, pads, chunk=_CHUNK):
  """dW [kh, kw, C, D] of a NHWC/HWIO convolution from input x and output gradient dy."""
  (kh, kw), (sy, sx) = kernel_hw, strides
  height, width = x.shape[1:3]
  out_h, out_w = dy.shape[1:3]
  shift_dy = (sy, sx) == (1, 1) and dy.shape[-1] < x.shape[-1]
  if shift_dy:
    # dW[i, j] = sum_{y', x'} X[y', x'] dY[y' + pad_lo - i, x' + pad_lo - j], dY zero-padded.
    (ylo, yhi), (xlo, xhi) = pads
    dy_pads = ((0, 0), (kh - 1 - ylo, kh - 1 - yhi), (kw - 1 - xlo, kw - 1 - xhi), (0, 0))

  def chunk_grad(xc, dyc):
    if shift_dy:
      dyc = jnp.pad(dyc, dy_pads)
      window = lambda i, j: (xc, dyc[:, kh - 1 - i:kh - 1 - i + height,
                                     kw - 1 - j:kw - 1 - j + width])
    else:
      xc = jnp.pad(xc, ((0, 0),) + pads + ((0, 0),))
      window = lambda i, j: (xc[:, i:i + sy * (out_h - 1) + 1:sy,
                                j:j + sx * (out_w - 1) + 1:sx], dyc)
    return jnp.stack([
        jnp.stack([jnp.einsum('nyxc,nyxd->cd', *window(i, j),
                              preferred_element_type=jnp.float32) for j in range(kw)])
        for i in range(kh)])

  def body(total, chunk_pair):
    return total + chunk_grad(*chunk_pair), None

  zeros = jnp.zeros((kh, kw, x.shape[-1], dy.shape[-1]), jnp.float32)
  total, _ = lax.scan(body, zeros, (_chunks(x, chunk), _chunks(dy, chunk)))
  return total


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_shift_grad(lhs, rhs, strides, pads, precision):
  return _xla_conv(lhs, rhs, strides, pads, precision)


def _xla_conv(lhs, rhs, strides, pads, precision):
  return lax.conv_general_dilated(lhs, rhs, strides, pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  precision=precision)


def _fwd(lhs, rhs, strides, pads, precision):
  return _xla_conv(lhs, rhs, strides, pads, precision), (lhs, rhs)


def _bwd(strides, pads, precision, residuals, dy):
  lhs, rhs = residuals
  _, lhs_vjp = jax.vjp(lambda l: _xla_conv(l, rhs, strides, pads, precision), lhs)
  drhs = shifted_weight_grad(lhs, dy, rhs.shape[:2], strides, pads)
  return lhs_vjp(dy)[0], drhs.astype(rhs.dtype)


_conv_shift_grad.defvjp(_fwd, _bwd)


def _is_nhwc(dimension_numbers, lhs, rhs):
  if dimension_numbers is None:  # lax's default layout is NCHW / OIHW
    return False
  layout = functools.partial(lax.conv_dimension_numbers, lhs.shape, rhs.shape)
  return layout(dimension_numbers) == layout(('NHWC', 'HWIO', 'NHWC'))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, *, weight_grad='auto'):
  """`lax.conv_general_dilated`, with the shifted-product weight gradient where it applies."""
  if weight_grad not in WEIGHT_GRADS:
    raise ValueError(f'weight_grad: {weight_grad!r} is not one of {WEIGHT_GRADS}.')
  use_shift = weight_grad == 'shift' or (weight_grad == 'auto' and jax.default_backend() == 'cpu')
  plain = (lhs.ndim == 4 and feature_group_count == 1 and batch_group_count == 1
           and preferred_element_type is None
           and all(d == 1 for d in (lhs_dilation or (1, 1)) + tuple(rhs_dilation or (1, 1)))
           and _is_nhwc(dimension_numbers, lhs, rhs))
  if not (use_shift and plain):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type)
  pads = _pairs(padding, lhs.shape[1:3], rhs.shape[:2], tuple(window_strides))
  return _conv_shift_grad(lhs, rhs, tuple(window_strides), pads, precision)


def conv_fn(weight_grad):
  """The `conv_general_dilated` to hand to `flax.linen.Conv` for a `weight_grad` setting."""
  return functools.partial(conv_general_dilated, weight_grad=weight_grad)

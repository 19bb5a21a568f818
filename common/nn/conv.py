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
(tests/common/nn/test_conv.py checks both against a NumPy loop).

`conv_general_dilated(weight_grad=...)` has `lax.conv_general_dilated`'s
signature, so it plugs into `flax.linen.Conv(conv_general_dilated=...)`;
`weight_grad='auto'` uses the shifted products on the CPU backend only (GPU and
TPU convolution libraries compute weight gradients well).

Transposed convolutions (the V1/V2, PlaNet and World Models decoders) have the
same trouble, worse: XLA CPU took 3.8 s for the weight gradients of a depth-16
PlaNet decoder at 512 images, against 0.6 s for its forward pass. With
`lax.conv_transpose`'s rule y[s a + i'] += x[a] W[.] the weight gradient is again
kh * kw products, now of x with strided slices of dY:

  dW[i, j] = sum_{n, a, b} X[n, a, b, :]^T dY_pad[n, lo + s*a - i, lo + s*b - j, :],

(lo: the low padding of the dilated input, dY zero outside the image).
`ConvTranspose` is `flax.linen.ConvTranspose` (same parameters and values) with
that gradient on CPU.
"""
import functools
from typing import Any, Callable

import flax.linen as nn
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
    return _tap_products(window, kh, kw)

  return _sum_over_chunks(chunk_grad, x, dy, (kh, kw), chunk)


def _tap_products(window, kh, kw):
  """[kh, kw, C, D]: for every kernel tap (i, j), the product of the pair `window(i, j)`."""
  return jnp.stack([
      jnp.stack([jnp.einsum('nyxc,nyxd->cd', *window(i, j),
                            preferred_element_type=jnp.float32) for j in range(kw)])
      for i in range(kh)])


def _sum_over_chunks(chunk_grad, x, dy, kernel_hw, chunk):
  """sum of `chunk_grad(x_chunk, dy_chunk)` over chunks of images, so operands stay in cache."""
  def body(total, chunk_pair):
    return total + chunk_grad(*chunk_pair), None

  zeros = jnp.zeros(tuple(kernel_hw) + (x.shape[-1], dy.shape[-1]), jnp.float32)
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


# ---------------------------------------------------------------- transposed convolution


def transpose_pads(kernel, stride, padding):
  """(lo, hi) padding of the stride-dilated input in `lax.conv_transpose` for 'VALID' / 'SAME'
  (the rule of its `_conv_transpose_padding`, restated: the function is private)."""
  if padding == 'SAME':
    total = kernel + stride - 2
    low = kernel - 1 if stride > kernel - 1 else -(-total // 2)
  elif padding == 'VALID':
    total = kernel + stride - 2 + max(kernel - stride, 0)
    low = kernel - 1
  else:
    raise ValueError(f"padding: {padding!r}; the shifted gradient supports 'VALID' and 'SAME'.")
  return low, total - low


def shifted_transpose_weight_grad(x, dy, kernel_hw, strides, lows, chunk=_CHUNK):
  """dW [kh, kw, C, D] of a NHWC/HWIO `lax.conv_transpose` from its input x and output grad dy."""
  (kh, kw), (sy, sx), (ly, lx) = kernel_hw, strides, lows
  height, width = x.shape[1:3]
  # dy rows lo + s*a - i for a in [0, H), i in [0, kh), zero outside [0, out_h).
  pad_y = (kh - 1, max(0, ly + sy * (height - 1) - (dy.shape[1] - 1)))
  pad_x = (kw - 1, max(0, lx + sx * (width - 1) - (dy.shape[2] - 1)))

  def chunk_grad(xc, dyc):
    dyc = jnp.pad(dyc, ((0, 0), pad_y, pad_x, (0, 0)))
    def window(i, j):
      y0, x0 = ly - i + kh - 1, lx - j + kw - 1
      return xc, dyc[:, y0:y0 + sy * (height - 1) + 1:sy, x0:x0 + sx * (width - 1) + 1:sx]
    return _tap_products(window, kh, kw)

  return _sum_over_chunks(chunk_grad, x, dy, (kh, kw), chunk)


def _xla_conv_transpose(x, kernel, strides, padding, precision):
  return lax.conv_transpose(x, kernel, strides, padding, precision=precision,
                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_transpose_shift_grad(x, kernel, strides, padding, precision):
  return _xla_conv_transpose(x, kernel, strides, padding, precision)


def _transpose_fwd(x, kernel, strides, padding, precision):
  return _xla_conv_transpose(x, kernel, strides, padding, precision), (x, kernel)


def _transpose_bwd(strides, padding, precision, residuals, dy):
  x, kernel = residuals
  _, x_vjp = jax.vjp(lambda v: _xla_conv_transpose(v, kernel, strides, padding, precision), x)
  lows = tuple(transpose_pads(k, s, padding)[0] for k, s in zip(kernel.shape[:2], strides))
  dkernel = shifted_transpose_weight_grad(x, dy, kernel.shape[:2], strides, lows)
  return x_vjp(dy)[0], dkernel.astype(kernel.dtype)


_conv_transpose_shift_grad.defvjp(_transpose_fwd, _transpose_bwd)


def conv_transpose(x, kernel, strides, padding, precision=None, *, weight_grad='auto'):
  """NHWC/HWIO `lax.conv_transpose` with the shifted-product weight gradient where it applies
  ('VALID' / 'SAME' padding, on the CPU backend for 'auto')."""
  if weight_grad not in WEIGHT_GRADS:
    raise ValueError(f'weight_grad: {weight_grad!r} is not one of {WEIGHT_GRADS}.')
  use_shift = weight_grad == 'shift' or (weight_grad == 'auto' and jax.default_backend() == 'cpu')
  if not (use_shift and x.ndim == 4 and padding in ('VALID', 'SAME')):
    return _xla_conv_transpose(x, kernel, tuple(strides), padding, precision)
  return _conv_transpose_shift_grad(x, kernel, tuple(strides), padding, precision)


class ConvTranspose(nn.Module):
  """`flax.linen.ConvTranspose` for NHWC images (same parameter names, shapes and initial values)
  whose kernel gradient is the shifted products above on CPU."""
  features: int
  kernel_size: tuple
  strides: tuple = (1, 1)
  padding: str = 'SAME'
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Any = None
  param_dtype: Any = jnp.float32
  weight_grad: str = 'auto'

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', self.kernel_init,
                        tuple(self.kernel_size) + (x.shape[-1], self.features), self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_transpose(x, kernel, tuple(self.strides), self.padding, weight_grad=self.weight_grad)
    return y + bias if bias is not None else y

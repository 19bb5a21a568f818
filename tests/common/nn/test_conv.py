"""common/nn/conv.py: the shifted-product weight gradient against a NumPy loop and XLA's."""
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn import conv


def _numpy_weight_grad(x, dy, kernel_hw, strides, pads):
  """dW[i, j, c, d] = sum_{n, y, x} x_pad[n, s*y + i, s*x + j, c] * dy[n, y, x, d], as loops."""
  (kh, kw), (sy, sx) = kernel_hw, strides
  x = np.pad(x.astype(np.float64), ((0, 0),) + tuple(pads) + ((0, 0),))
  dy = dy.astype(np.float64)
  grad = np.zeros((kh, kw, x.shape[-1], dy.shape[-1]))
  for i in range(kh):
    for j in range(kw):
      for y in range(dy.shape[1]):
        for xx in range(dy.shape[2]):
          grad[i, j] += x[:, sy * y + i, sx * xx + j, :].T @ dy[:, y, xx, :]
  return grad


# (images, size, in channels, out channels, kernel, stride, padding): both stride-1
# branches (shift x when it has fewer channels, else shift dy), stride 2, asymmetric
# explicit padding, and image counts that are not a multiple of the chunk.
CASES = [
    (11, 12, 3, 5, 5, 1, 'SAME'),
    (9, 12, 6, 2, 5, 1, 'SAME'),
    (7, 15, 3, 4, 4, 2, 'VALID'),
    (5, 12, 4, 6, 3, 2, 'SAME'),
    (3, 8, 2, 3, 3, 1, ((1, 0), (2, 1))),
]


@pytest.mark.parametrize('images,size,cin,cout,kernel,stride,padding', CASES)
def test_weight_and_input_grads_match_numpy_and_xla(images, size, cin, cout, kernel, stride,
                                                    padding):
  rng = np.random.default_rng(images)
  x = rng.normal(size=(images, size, size, cin)).astype(np.float32)
  w = rng.normal(size=(kernel, kernel, cin, cout)).astype(np.float32)
  dims = ('NHWC', 'HWIO', 'NHWC')

  def loss(fn):
    return lambda x, w: jnp.sum(jnp.sin(fn(x, w, (stride, stride), padding, dimension_numbers=dims)))

  xla_dx, xla_dw = jax.grad(loss(lax.conv_general_dilated), (0, 1))(x, w)
  dx, dw = jax.grad(loss(conv.conv_fn('shift')), (0, 1))(x, w)
  out, vjp = jax.vjp(lambda x: lax.conv_general_dilated(x, w, (stride, stride), padding,
                                                        dimension_numbers=dims), x)
  dy = np.cos(np.asarray(out))
  pads = padding if not isinstance(padding, str) else lax.padtype_to_pads(
      x.shape[1:3], w.shape[:2], (stride, stride), padding)
  expected = _numpy_weight_grad(x, dy, w.shape[:2], (stride, stride), pads)
  np.testing.assert_allclose(dw, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dw, xla_dw, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dx, xla_dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, vjp(dy)[0], rtol=1e-5, atol=1e-5)


def test_flax_conv_uses_it_and_gives_xla_gradients():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 8, 8, 3)), jnp.float32)
  make = lambda grad: nn.Conv(4, (5, 5), padding='SAME', conv_general_dilated=conv.conv_fn(grad))
  params = make('xla').init(jax.random.PRNGKey(0), x)
  loss = lambda grad: lambda p: jnp.sum(make(grad).apply(p, x) ** 2)
  jaxpr = str(jax.make_jaxpr(jax.grad(loss('auto')))(params))
  assert ('scan' in jaxpr) == (jax.default_backend() == 'cpu')  # the chunk loop of the shifted grad
  shift, xla = jax.grad(loss('shift'))(params), jax.grad(loss('xla'))(params)
  for a, b in zip(jax.tree.leaves(shift), jax.tree.leaves(xla)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_other_convolutions_fall_back_to_lax():
  x = jnp.ones((2, 8, 8, 4))
  w = jnp.ones((3, 3, 2, 6))
  grouped = conv.conv_fn('shift')(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=2)
  np.testing.assert_allclose(grouped, lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=2))
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: jnp.sum(conv.conv_fn('shift')(
      x, w, (1, 1), 'SAME', rhs_dilation=(2, 2), dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=2))))(w))
  assert 'scan' not in jaxpr


def test_unknown_setting_is_one_clear_error():
  with pytest.raises(ValueError, match='weight_grad'):
    conv.conv_fn('fast')(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), (1, 1), 'SAME')


# ---------------------------------------------------------------- transposed convolution


def _numpy_conv_transpose(x, w, stride, low, out_size):
  """y[n, s*a + low - i, s*b + low - j] += x[n, a, b] @ w[i, j] (lax.conv_transpose, unflipped
  kernel), as loops over the input pixels and kernel taps; outputs outside [0, out) dropped."""
  kh, kw = w.shape[:2]
  y = np.zeros((x.shape[0], out_size, out_size, w.shape[-1]))
  for a in range(x.shape[1]):
    for b in range(x.shape[2]):
      for i in range(kh):
        for j in range(kw):
          p, q = stride * a + low - i, stride * b + low - j
          if 0 <= p < out_size and 0 <= q < out_size:
            y[:, p, q] += x[:, a, b].astype(np.float64) @ w[i, j].astype(np.float64)
  return y


def _numpy_transpose_weight_grad(x, dy, kernel, stride, low):
  """dW[i, j] = sum_{n, a, b} x[n, a, b]^T dy[n, s*a + low - i, s*b + low - j], as loops."""
  grad = np.zeros((kernel, kernel, x.shape[-1], dy.shape[-1]))
  for a in range(x.shape[1]):
    for b in range(x.shape[2]):
      for i in range(kernel):
        for j in range(kernel):
          p, q = stride * a + low - i, stride * b + low - j
          if 0 <= p < dy.shape[1] and 0 <= q < dy.shape[2]:
            grad[i, j] += x[:, a, b].astype(np.float64).T @ dy[:, p, q].astype(np.float64)
  return grad


# (images, size, in, out, kernel, stride, padding): the V1/V2/PlaNet/World Models decoder
# layers (kernels 5 and 6, stride 2, VALID), SAME, stride 1 and a stride above the kernel.
TRANSPOSE_CASES = [
    (3, 5, 4, 3, 5, 2, 'VALID'),
    (9, 6, 3, 2, 6, 2, 'VALID'),
    (5, 5, 4, 3, 4, 2, 'SAME'),
    (2, 4, 2, 3, 3, 1, 'SAME'),
    (2, 3, 2, 3, 2, 3, 'VALID'),
]


@pytest.mark.parametrize('images,size,cin,cout,kernel,stride,padding', TRANSPOSE_CASES)
def test_conv_transpose_matches_numpy_and_xla(images, size, cin, cout, kernel, stride, padding):
  rng = np.random.default_rng(images + kernel)
  x = rng.normal(size=(images, size, size, cin)).astype(np.float32)
  w = rng.normal(size=(kernel, kernel, cin, cout)).astype(np.float32)
  low = conv.transpose_pads(kernel, stride, padding)[0]
  xla = lambda x, w: lax.conv_transpose(x, w, (stride, stride), padding,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  shift = lambda x, w: conv.conv_transpose(x, w, (stride, stride), padding, weight_grad='shift')
  out = np.asarray(shift(x, w))
  np.testing.assert_allclose(out, _numpy_conv_transpose(x, w, stride, low, out.shape[1]),
                             rtol=1e-4, atol=1e-4)
  dy = np.cos(out)
  loss = lambda fn: lambda x, w: jnp.sum(jnp.sin(fn(x, w)))
  dx, dw = jax.grad(loss(shift), (0, 1))(x, w)
  xla_dx, xla_dw = jax.grad(loss(xla), (0, 1))(x, w)
  np.testing.assert_allclose(dw, _numpy_transpose_weight_grad(x, dy, kernel, stride, low),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dw, xla_dw, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dx, xla_dx, rtol=1e-5, atol=1e-5)


def test_conv_transpose_module_is_flax_with_the_shifted_gradient():
  """Same parameters, initial values and outputs as flax.linen.ConvTranspose (checkpoints carry
  over); on CPU 'auto' runs the chunk loop of the shifted gradient."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5, 5, 6)), jnp.float32)
  ours = conv.ConvTranspose(3, (5, 5), (2, 2), 'VALID')
  theirs = nn.ConvTranspose(3, (5, 5), (2, 2), 'VALID')
  params = ours.init(jax.random.PRNGKey(3), x)
  flax_params = theirs.init(jax.random.PRNGKey(3), x)
  assert jax.tree.structure(params) == jax.tree.structure(flax_params)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(flax_params)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6, atol=1e-6)
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(ours.apply(p, x) ** 2)))(params))
  assert ('scan' in jaxpr) == (jax.default_backend() == 'cpu')


def test_conv_transpose_other_paddings_fall_back_to_lax():
  x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda w: jnp.sum(conv.conv_transpose(
      x, w, (2, 2), ((1, 1), (1, 1)), weight_grad='shift'))))(w))
  assert 'scan' not in jaxpr
  with pytest.raises(ValueError, match='weight_grad'):
    conv.conv_transpose(x, w, (2, 2), 'VALID', weight_grad='fast')

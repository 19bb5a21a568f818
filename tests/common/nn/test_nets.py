"""Tests for common/nn/nets.py: shapes with tiny sizes, GRUs against NumPy loops."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.nn import nets

V1 = dict(depth=4, mults=(1, 2, 4, 8), kernel=4, padding='VALID', act='elu', norm='none')
V3 = dict(depth=4, mults=(2, 3, 4, 4), kernel=5, padding='SAME', act='silu', norm='rms')


@pytest.mark.parametrize('style,size,features', [
    (V1, 64, 2 * 2 * 8 * 4),   # 64 -> 31 -> 14 -> 6 -> 2
    (V1, 96, 4 * 4 * 8 * 4),   # 96 -> 47 -> 22 -> 10 -> 4
    (V3, 64, 4 * 4 * 4 * 4),   # 64 -> 32 -> 16 -> 8 -> 4
    (V3, 96, 6 * 6 * 4 * 4),   # 96 -> 48 -> 24 -> 12 -> 6
])
def test_encoder_decoder_shapes(style, size, features):
  # Shapes only (jax.eval_shape): full-size convolutions are too slow for a 2-core CI.
  key = jax.random.PRNGKey(0)
  image = jax.ShapeDtypeStruct((2, 3, size, size, 3), jnp.uint8)
  encoder = nets.ImageEncoder(**style)
  params = jax.eval_shape(encoder.init, key, image)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  embed = jax.eval_shape(encoder.apply, params, image)
  assert embed.shape == (2, 3, features) and embed.dtype == jnp.float32
  decoder = nets.ImageDecoder(shape=(size, size, 3), **style)
  feat = jax.ShapeDtypeStruct((2, 3, 10), jnp.float32)
  recon = jax.eval_shape(decoder.apply, jax.eval_shape(decoder.init, key, feat), feat)
  assert recon.shape == (2, 3, size, size, 3) and recon.dtype == jnp.float32
  bf16 = nets.ImageEncoder(**style, dtype='bfloat16')
  params = jax.eval_shape(bf16.init, key, image)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


@pytest.mark.parametrize('size,features', [(64, 4 * 4 * 4 * 4), (96, 6 * 6 * 4 * 4)])
def test_reference_v3_maxpool_repeat_shapes(size, features):
  # DreamerV3 reference code: stride-1 convs + 2x2 max pool, repeat-upsample decoder.
  key = jax.random.PRNGKey(0)
  image = jax.ShapeDtypeStruct((2, size, size, 3), jnp.uint8)
  encoder = nets.ImageEncoder(**V3, downsample='maxpool')
  embed = jax.eval_shape(encoder.apply, jax.eval_shape(encoder.init, key, image), image)
  assert embed.shape == (2, features)
  decoder = nets.ImageDecoder(shape=(size, size, 3), **V3, upsample='repeat', output='sigmoid')
  feat = jax.ShapeDtypeStruct((2, 10), jnp.float32)
  params = jax.eval_shape(decoder.init, key, feat)
  assert 'conv0' in params['params'] and 'deconv0' not in params['params']
  recon = jax.eval_shape(decoder.apply, params, feat)
  assert recon.shape == (2, size, size, 3) and recon.dtype == jnp.float32
  with pytest.raises(ValueError, match='upsample'):
    nets.ImageDecoder(shape=(64, 64, 3), **V1, upsample='repeat').init(key, jnp.zeros((1, 5)))


def test_block_space_first_layer_matches_numpy():
  """V3 reference decoder `bspace` G: the first map is Norm(x0 + x1) (then act), where
  x0[i, j, g * c + k] = (deter_g @ K0_g + b0_g)[(i w + j) c + k] for block g of deter, and
  x1 = Linear(act(Norm(Linear_{2 units}(stoch)))) reshaped to [h, w, C]."""
  groups, deter, stoch, units = 4, 8, 6, 5
  decoder = nets.ImageDecoder(shape=(8, 12, 3), depth=4, mults=(1, 2), kernel=3, padding='SAME',
                              act='silu', norm='rms', upsample='repeat', output='sigmoid',
                              bspace=groups, deter=deter, units=units)
  feat = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (3, deter + stoch)), np.float64)
  params = decoder.init(jax.random.PRNGKey(1), feat)
  _, state = decoder.apply(params, feat, capture_intermediates=True)
  got = np.asarray(state['intermediates']['linear_norm']['__call__'][0])
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  h, w, top = 2, 3, 8                      # 8x12 / 2^2, depth 4 * mults[-1] 2
  c = top // groups
  silu = lambda x: x / (1 + np.exp(-x))
  for n in range(3):
    x0 = np.zeros((h, w, top))
    for g in range(groups):
      out = feat[n, g * 2:(g + 1) * 2] @ p['space0']['kernel'][g] + p['space0']['bias'][g]
      for i in range(h):
        for j in range(w):
          x0[i, j, g * c:(g + 1) * c] = out[(i * w + j) * c:(i * w + j + 1) * c]
    hidden = feat[n, deter:] @ p['space1']['kernel'] + p['space1']['bias']
    hidden = silu(_np_norm(hidden, 'rms', p['space1_norm'], 1e-4))
    x1 = (hidden @ p['space2']['kernel'] + p['space2']['bias']).reshape(h, w, top)
    want = _np_norm(x0 + x1, 'rms', p['linear_norm'], 1e-4)
    np.testing.assert_allclose(got[n], want, rtol=1e-4, atol=1e-5)
  assert p['space0']['kernel'].shape == (groups, deter // groups, h * w * top // groups)
  with pytest.raises(ValueError, match='bspace'):
    nets.ImageDecoder(shape=(8, 12, 3), depth=3, mults=(1, 2), kernel=3, padding='SAME',
                      upsample='repeat', bspace=4, deter=8, units=5).init(
                          jax.random.PRNGKey(0), jnp.zeros((1, 14)))


def _np_conv_same(x, kernel, bias):
  """Stride-1 'same' cross-correlation by loops: x [H, W, I], kernel [k, k, I, O] -> [H, W, O]."""
  k = kernel.shape[0]
  pad = (k - 1) // 2
  xp = np.pad(x, ((pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
  out = np.zeros(x.shape[:2] + kernel.shape[-1:])
  for i in range(x.shape[0]):
    for j in range(x.shape[1]):
      out[i, j] = np.einsum('hwc,hwco->o', xp[i:i + k, j:j + k], kernel) + bias
  return out


def test_repeat_upsample_stage_matches_numpy():
  # One stage: Linear -> [2, 3, 2] map -> RMSNorm -> SiLU -> nearest x2 -> 3x3 'same' conv.
  decoder = nets.ImageDecoder(shape=(4, 6, 2), depth=2, mults=(1,), kernel=3, padding='SAME',
                              act='silu', norm='rms', upsample='repeat')
  feat = jax.random.normal(jax.random.PRNGKey(0), (2, 5))
  params = decoder.init(jax.random.PRNGKey(1), feat)
  params = jax.tree.map(  # non-trivial norm scales and biases
      lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  recon = np.asarray(decoder.apply(params, feat))
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), params['params'])
  for n in range(2):
    x = np.asarray(feat[n], np.float64) @ p['linear']['kernel'] + p['linear']['bias']
    x = x.reshape(2, 3, 2)
    x = x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + 1e-4) * p['linear_norm']['scale']
    x = x / (1 + np.exp(-x))
    up = np.zeros((4, 6, 2))
    for i in range(4):
      for j in range(6):
        up[i, j] = x[i // 2, j // 2]
    expected = _np_conv_same(up, p['conv0']['kernel'], p['conv0']['bias'])
    np.testing.assert_allclose(recon[n], expected, rtol=1e-4, atol=1e-5)


def test_maxpool_encoder_stage_matches_numpy():
  # One stage: 3x3 'same' conv (stride 1) -> 2x2 max pool -> RMSNorm -> SiLU.
  encoder = nets.ImageEncoder(depth=3, mults=(1,), kernel=3, padding='SAME', act='silu',
                              norm='rms', downsample='maxpool')
  image = jax.random.randint(jax.random.PRNGKey(0), (1, 4, 6, 2), 0, 256).astype(jnp.uint8)
  params = encoder.init(jax.random.PRNGKey(1), image)
  params = jax.tree.map(
      lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  embed = np.asarray(encoder.apply(params, image))
  p = jax.tree.map(lambda v: np.asarray(v, np.float64), params['params'])
  x = np.asarray(image[0], np.float64) / 255.0 - 0.5
  y = _np_conv_same(x, p['conv0']['kernel'], p['conv0']['bias'])
  pooled = np.zeros((2, 3, 3))
  for i in range(2):
    for j in range(3):
      pooled[i, j] = y[2 * i:2 * i + 2, 2 * j:2 * j + 2].max((0, 1))
  pooled = pooled / np.sqrt(np.mean(pooled ** 2, -1, keepdims=True) + 1e-4) * p['norm0']['scale']
  expected = pooled / (1 + np.exp(-pooled))
  np.testing.assert_allclose(embed[0], expected.reshape(-1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('height,width', [(6, 8), (7, 5)])
def test_max_pool_2x2_matches_flax_values_and_gradients(height, width):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, height, width, 3))
  np.testing.assert_array_equal(nets.max_pool_2x2(x), nn.max_pool(x, (2, 2), (2, 2)))
  cot = jax.random.normal(jax.random.PRNGKey(1), (2, height // 2, width // 2, 3))
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) * cot))(x)
  np.testing.assert_array_equal(grad(nets.max_pool_2x2),
                                grad(lambda x: nn.max_pool(x, (2, 2), (2, 2))))


def test_sigmoid_decoder_range():
  decoder = nets.ImageDecoder(shape=(8, 8, 1), depth=2, mults=(1, 1), kernel=3, padding='SAME',
                              act='silu', norm='rms', output='sigmoid')
  feat = 10 * jax.random.normal(jax.random.PRNGKey(0), (2, 4))
  params = jax.jit(decoder.init)(jax.random.PRNGKey(1), feat)
  recon = jax.jit(decoder.apply)(params, feat)
  assert recon.shape == (2, 8, 8, 1)
  assert float(recon.min()) >= 0.0 and float(recon.max()) <= 1.0


def test_encoder_scales_uint8_like_reference():
  key = jax.random.PRNGKey(1)
  image = jax.random.randint(key, (2, 16, 16, 1), 0, 256).astype(jnp.uint8)
  encoder = nets.ImageEncoder(**dict(V1, mults=(1,)))
  params = jax.jit(encoder.init)(key, image)
  apply = jax.jit(encoder.apply)
  from_uint8 = apply(params, image)
  from_float = apply(params, np.asarray(image, np.float32) / 255.0)
  np.testing.assert_allclose(from_uint8, from_float, rtol=1e-5, atol=1e-5)
  # The conv sees x / 255 - 0.5: check one output pixel against a NumPy valid convolution.
  kernel = np.asarray(params['params']['conv0']['kernel'])
  bias = np.asarray(params['params']['conv0']['bias'])
  x = np.asarray(image[0], np.float64) / 255.0 - 0.5
  patch = x[2:6, 4:8, :]   # output pixel (1, 2) with stride 2
  expected = np.einsum('hwc,hwco->o', patch, kernel) + bias
  first = np.where(expected > 0, expected, np.expm1(np.minimum(expected, 0)))   # elu
  np.testing.assert_allclose(from_uint8[0].reshape(7, 7, 4)[1, 2], first, rtol=1e-4, atol=1e-5)


def test_decoder_rejects_unreachable_size():
  decoder = nets.ImageDecoder(shape=(80, 80, 3), **V1)
  with pytest.raises(ValueError, match='kernels'):
    decoder.init(jax.random.PRNGKey(0), jnp.zeros((1, 5)))


def test_mlp_shapes_outscale_and_dtype():
  key = jax.random.PRNGKey(2)
  x = jax.random.normal(key, (3, 4, 7))
  mlp = nets.MLP(layers=2, units=16, act='silu', norm='rms', out=5, outscale=0.0)
  params = jax.jit(mlp.init)(key, x)
  y = jax.jit(mlp.apply)(params, x)
  assert y.shape == (3, 4, 5)
  np.testing.assert_array_equal(y, 0.0)   # zero-initialised output layer (V3 heads)
  bf16 = nets.MLP(layers=2, units=16, act='silu', norm='rms', out=5, dtype='bfloat16')
  params = jax.jit(bf16.init)(key, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  y16 = jax.jit(bf16.apply)(params, x)
  y32 = jax.jit(nets.MLP(layers=2, units=16, act='silu', norm='rms', out=5).apply)(params, x)
  assert y16.dtype == jnp.float32
  np.testing.assert_allclose(y16, y32, atol=0.1, rtol=0.1)


def test_trunc_normal_fan_in_variance():
  kernel = nets.initializer('trunc_normal')(jax.random.PRNGKey(3), (400, 300))
  assert abs(float(np.std(kernel)) - np.sqrt(1 / 400)) < 0.03 * np.sqrt(1 / 400)
  assert float(np.abs(kernel).max()) <= 2 * np.sqrt(1 / 400) / 0.8796 + 1e-6
  assert not np.any(nets.initializer('trunc_normal', 0.0)(jax.random.PRNGKey(0), (3, 3)))
  with pytest.raises(ValueError, match='winit'):
    nets.initializer('bogus')


def test_outscale_multiplies_the_initial_weights():
  """DreamerV3 scales an output layer's initialised kernel by `outscale` (the actor's 0.01):
  std outscale / sqrt(fan_in), not sqrt(outscale / fan_in)."""
  mlp = nets.MLP(layers=1, units=512, act='silu', norm='rms', out=300, outscale=0.01)
  params = mlp.init(jax.random.PRNGKey(0), jnp.zeros((1, 7)))['params']
  std = float(np.std(params['out']['kernel']))
  assert abs(std - 0.01 / np.sqrt(512)) < 0.02 * 0.01 / np.sqrt(512), std


def test_block_linear_fan_in_is_the_whole_input():
  """The reference's BlockLinear kernel [G, I, O] has fan-in G * I (all inputs), so each
  block's weights have std 1 / sqrt(G * I), sqrt(G) smaller than a dense layer on I."""
  blocks, inputs, features = 8, 96, 512
  layer = nets.BlockLinear(features, blocks)
  params = layer.init(jax.random.PRNGKey(1), jnp.zeros((blocks, 1, inputs)))['params']
  kernel = np.asarray(params['kernel'])
  assert kernel.shape == (blocks, inputs, features // blocks)
  want = 1 / np.sqrt(blocks * inputs)
  assert abs(float(kernel.std()) - want) < 0.02 * want
  assert float(np.abs(kernel).max()) <= 2 * want / 0.8796 + 1e-6   # truncated at 2 std


def _np_norm(x, kind, params, eps):
  if kind == 'none':
    return x
  if kind == 'rms':
    return x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + eps) * params['scale']
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * params['scale'] + params['bias']


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize('norm', ['layer', 'none'])
def test_gru_cell_matches_numpy_loop(norm):
  size, inputs_dim, batch, length = 6, 3, 2, 5
  cell = nets.GRUCell(size, norm=norm, update_bias=-1.0)
  key = jax.random.PRNGKey(4)
  xs = np.asarray(jax.random.normal(key, (length, batch, inputs_dim)))
  h0 = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (batch, size)))
  params = cell.init(key, h0, xs[0])
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  apply = jax.jit(cell.apply)
  state, expected = h0.astype(np.float64), h0.astype(np.float64)
  for t in range(length):
    state = apply(params, state, xs[t])
    for b in range(batch):
      z = np.concatenate([xs[t, b], expected[b]]) @ p['linear']['kernel'] + p['linear']['bias']
      z = _np_norm(z, norm, p.get('norm'), 1e-4)   # V2: the Linear's bias comes before the norm
      r, c, u = z[:size], z[size:2 * size], z[2 * size:]
      r = _sigmoid(r)
      c = np.tanh(r * c)
      u = _sigmoid(u - 1.0)
      expected[b] = u * c + (1 - u) * expected[b]
    np.testing.assert_allclose(state, expected, rtol=1e-4, atol=1e-5)


def _cell_inputs_and_params(cell, size, length, inputs_dim=3, batch=2):
  """Inputs xs [T, B, I], a state h0 [B, D], the initial parameters (float64), and
  parameters perturbed so that zero-initialised biases are checked in their places too."""
  xs = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (length, batch, inputs_dim)))
  h0 = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (batch, size)))
  params = cell.init(jax.random.PRNGKey(3), h0, xs[0])
  initial = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.PRNGKey(4), a.shape),
                        params)
  return xs, h0, initial, params


def test_classic_gru_cell_matches_numpy_loop():
  """TF's GRUBlockCell (PlaNet's cell): [r, u] = sigmoid([x, h] W_ru + b_ru), b_ru starting
  at 1; c = tanh([x, r h] W_c + b_c); h' = u h + (1 - u) c."""
  size, length = 5, 4
  cell = nets.ClassicGRUCell(size)
  xs, h0, initial, params = _cell_inputs_and_params(cell, size, length)
  np.testing.assert_array_equal(initial['b_ru'], 1.0)   # the update gate starts at sigmoid(1)
  np.testing.assert_array_equal(initial['b_c'], 0.0)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  apply = jax.jit(cell.apply)
  state, expected = h0, h0.astype(np.float64)
  for t in range(length):
    state = apply(params, state, xs[t])
    for b in range(len(h0)):
      gates = _sigmoid(np.concatenate([xs[t, b], expected[b]]) @ p['w_ru'] + p['b_ru'])
      r, u = gates[:size], gates[size:]
      c = np.tanh(np.concatenate([xs[t, b], r * expected[b]]) @ p['w_c'] + p['b_c'])
      expected[b] = u * expected[b] + (1 - u) * c
    np.testing.assert_allclose(state, expected, rtol=1e-4, atol=1e-5)


def test_keras_gru_cell_matches_numpy_loop():
  """tf.keras GRUCell (TF 2 defaults, DreamerV1's cell): reset_after, gate order [z, r, h],
  z gates the old state; input kernel glorot-uniform, recurrent kernel orthogonal."""
  size, length = 6, 5
  cell = nets.KerasGRUCell(size)
  xs, h0, initial, params = _cell_inputs_and_params(cell, size, length)
  recurrent = initial['recurrent_kernel']
  np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(size), atol=1e-5)   # orthogonal rows
  assert np.abs(initial['kernel']).max() <= np.sqrt(6 / (3 + 3 * size))           # glorot limit
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  apply = jax.jit(cell.apply)
  state, expected = h0, h0.astype(np.float64)
  for t in range(length):
    state = apply(params, state, xs[t])
    x = xs[t] @ p['kernel'] + p['bias'][0]
    h = expected @ p['recurrent_kernel'] + p['bias'][1]
    z = _sigmoid(x[:, :size] + h[:, :size])
    r = _sigmoid(x[:, size:2 * size] + h[:, size:2 * size])
    cand = np.tanh(x[:, 2 * size:] + r * h[:, 2 * size:])
    expected = z * expected + (1 - z) * cand
    np.testing.assert_allclose(state, expected, rtol=1e-4, atol=1e-5)


def test_block_gru_matches_numpy_loop():
  size, blocks, inputs_dim, batch = 8, 4, 3, 2
  cell = nets.BlockGRU(size, blocks, hidden_layers=1, act='silu', norm='rms')
  key = jax.random.PRNGKey(6)
  x = np.asarray(jax.random.normal(key, (batch, inputs_dim)), np.float64)
  h = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (batch, size)), np.float64)
  params = cell.init(key, h, x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params['params'])
  out = cell.apply(params, h, x)
  k = size // blocks
  for b in range(batch):
    hidden = []
    for g in range(blocks):
      z = np.concatenate([h[b, g * k:(g + 1) * k], x[b]])
      hidden.append(z @ p['hidden0']['kernel'][g] + p['hidden0']['bias'][g])
    hidden = _np_norm(np.concatenate(hidden), 'rms', p['norm0'], 1e-4)   # norm over all D
    hidden = hidden * _sigmoid(hidden)   # silu
    gates = [hidden[g * k:(g + 1) * k] @ p['gates']['kernel'][g] + p['gates']['bias'][g]
             for g in range(blocks)]
    reset = np.concatenate([gt[:k] for gt in gates])
    cand = np.concatenate([gt[k:2 * k] for gt in gates])
    update = np.concatenate([gt[2 * k:] for gt in gates])
    reset, update = _sigmoid(reset), _sigmoid(update - 1.0)
    expected = update * np.tanh(reset * cand) + (1 - update) * h[b]
    np.testing.assert_allclose(out[b], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kw', [dict(norm='none'), dict(norm='rms', block_norm=True)])
def test_block_gru_recurrence_is_block_diagonal(kw):
  size, blocks = 8, 4
  cell = nets.BlockGRU(size, blocks, hidden_layers=1, **kw)
  key = jax.random.PRNGKey(8)
  h = jax.random.normal(key, (1, size))
  x = jax.random.normal(jax.random.PRNGKey(9), (1, 3))
  params = cell.init(key, h, x)
  jac = np.asarray(jax.jit(jax.jacfwd(lambda s: cell.apply(params, s, x)[0]))(h)[:, 0])   # [D, D]
  k = size // blocks
  for i in range(blocks):
    for j in range(blocks):
      block = jac[i * k:(i + 1) * k, j * k:(j + 1) * k]
      if i == j:
        assert np.abs(block).max() > 1e-4
      else:
        np.testing.assert_array_equal(block, 0.0)
  # The shared input reaches every block.
  jac_x = np.asarray(jax.jit(jax.jacfwd(lambda a: cell.apply(params, h, a)[0]))(x)[:, 0])
  for i in range(blocks):
    assert np.abs(jac_x[i * k:(i + 1) * k]).max() > 1e-4


def test_gru_bad_state_shape_names_argument():
  cell = nets.GRUCell(6)
  with pytest.raises(ValueError, match='state'):
    cell.init(jax.random.PRNGKey(0), jnp.zeros((2, 5)), jnp.zeros((2, 3)))
  with pytest.raises(ValueError, match='act'):
    nets.get_act('swish2')

"""Network building blocks shared by PlaNet, DreamerV1/V2/V3 and World Models.

Flax Linen modules. Every module computes in a configurable `dtype` (use
bfloat16 on GPU) and keeps float32 parameters; normalisation statistics are
always computed in float32.

Papers:
  * PlaNet (Hafner et al. 2019), DreamerV1 (Hafner et al. 2020, App. A/B):
    ELU, no normalisation, 4x4 stride-2 'valid' convolutions of depth 32, a
    decoder that starts from a 1x1 feature map with transposed kernels 5,5,6,6.
  * DreamerV2 (Hafner et al. 2021, App. C): the same convolutions of depth 48,
    a layer-normalised GRU whose update gate is biased by -1.
  * DreamerV3 (Hafner et al. 2023, App. B "Networks"): SiLU, RMSNorm, kernel 5
    'same' convolutions with channel multipliers [2,3,4,4] (the reference code:
    stride-1 convs with 2x2 max pooling in the encoder, nearest-neighbour 2x
    upsampling + stride-1 convs in the decoder; stride-2 convs and transposed
    convs are the cheaper option), a sigmoid image decoder, the block-diagonal GRU, truncated-normal fan-in
    initialisation and scaled (often zero) output layers.

Images: encoders take `uint8` pixels and use x / 255 - 0.5, as the reference
implementations do; a float image is taken to be in [0, 1] already and only
shifted by -0.5.
"""
from typing import Callable, Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from common.nn import conv

ACTIVATIONS = {
    'none': lambda x: x,
    'silu': jax.nn.silu,
    'elu': jax.nn.elu,
    'relu': jax.nn.relu,
    'tanh': jnp.tanh,
    'gelu': jax.nn.gelu,
    'sigmoid': jax.nn.sigmoid,
    'leaky_relu': jax.nn.leaky_relu,
}
NORMS = ('none', 'rms', 'layer')
DOWNSAMPLES = ('stride', 'maxpool')     # ImageEncoder.downsample
UPSAMPLES = ('transpose', 'repeat')     # ImageDecoder.upsample
INITS = ('trunc_normal', 'normal', 'uniform', 'glorot_uniform', 'lecun_normal', 'zeros')


def _dtype(dtype):
  """'float32' | 'bfloat16' | 'float16' | a numpy dtype -> the dtype."""
  return jnp.dtype(dtype)


def get_act(name: str) -> Callable:
  """The activation function called `name` (one of `ACTIVATIONS`)."""
  if name not in ACTIVATIONS:
    raise ValueError(f'act: unknown activation {name!r}; use one of {sorted(ACTIVATIONS)}.')
  return ACTIVATIONS[name]


def initializer(name: str = 'trunc_normal', scale: float = 1.0, in_axis=-2, out_axis=-1,
                batch_axis=()) -> Callable:
  """A weight initialiser (a `jax.nn.initializers` function).

  'trunc_normal': DreamerV3's fan-in truncated normal: N(0, scale / fan_in)
    truncated to +/-2 std and rescaled by 1/0.8796 so the variance is
    scale / fan_in (DreamerV3, App. B; identical to variance scaling with a
    'truncated_normal' distribution).
  'normal' / 'uniform': the same variance with a normal or uniform law.
  'glorot_uniform': Keras' default, used by the TF reference of PlaNet/V1/V2
    (variance scale / fan_avg).
  'lecun_normal': Flax's default. 'zeros': all zeros.
  `scale` is DreamerV3's `outscale` for output layers: it multiplies the weights (the
  reference scales the initialised kernel), so their variance is scale^2 / fan;
  `scale == 0` gives zeros.
  """
  if name not in INITS:
    raise ValueError(f'winit: unknown initialiser {name!r}; use one of {INITS}.')
  if name == 'zeros' or scale == 0.0:
    return jax.nn.initializers.zeros
  scale = scale * scale  # variance_scaling takes a variance factor
  kw = dict(in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis)
  if name == 'trunc_normal':
    return jax.nn.initializers.variance_scaling(scale, 'fan_in', 'truncated_normal', **kw)
  if name == 'normal':
    return jax.nn.initializers.variance_scaling(scale, 'fan_in', 'normal', **kw)
  if name == 'uniform':
    return jax.nn.initializers.variance_scaling(scale, 'fan_in', 'uniform', **kw)
  if name == 'glorot_uniform':
    return jax.nn.initializers.variance_scaling(scale, 'fan_avg', 'uniform', **kw)
  return jax.nn.initializers.variance_scaling(scale, 'fan_in', 'truncated_normal', **kw)


def _check(name, value, options):
  if value not in options:
    raise ValueError(f'{name}: unknown value {value!r}; use one of {tuple(options)}.')


class Norm(nn.Module):
  """Normalisation over the last axis, computed in float32.

  'rms' (DreamerV3): y = x / sqrt(mean(x^2) + eps) * scale.
  'layer' (DreamerV2's GRU): y = (x - mean) / sqrt(var + eps) * scale + bias.
  'none': identity. Input [..., D] -> output [..., D] in `dtype`.
  `eps` 1e-4 follows the DreamerV3 reference (TF Keras used 1e-3 for V2).
  """
  kind: str = 'rms'
  eps: float = 1e-4
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    _check('norm', self.kind, NORMS)
    if self.kind == 'none':
      return x
    x32 = x.astype(jnp.float32)
    scale = self.param('scale', jax.nn.initializers.ones, (x.shape[-1],), jnp.float32)
    if self.kind == 'rms':
      y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), -1, keepdims=True) + self.eps) * scale
    else:
      bias = self.param('bias', jax.nn.initializers.zeros, (x.shape[-1],), jnp.float32)
      mean = jnp.mean(x32, -1, keepdims=True)
      var = jnp.mean(jnp.square(x32 - mean), -1, keepdims=True)
      y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias
    return y.astype(_dtype(self.dtype))


def dense(features: int, winit: str = 'trunc_normal', outscale: float = 1.0,
          use_bias: bool = True, dtype: str = 'float32', name: Optional[str] = None) -> nn.Dense:
  """A Linear layer with the given initialiser, zero bias, float32 params, `dtype` compute."""
  return nn.Dense(features, use_bias=use_bias, kernel_init=initializer(winit, outscale),
                  bias_init=jax.nn.initializers.zeros, dtype=_dtype(dtype),
                  param_dtype=jnp.float32, name=name)


class MLP(nn.Module):
  """`layers` x (Linear -> Norm -> act), then an optional Linear output layer.

  The DreamerV3 layer order (Linear, RMSNorm, SiLU; App. B); V1/V2 use
  norm='none', act='elu'. The output layer (when `out` is set) is initialised
  with `outscale` (0 gives the zero-initialised reward/value heads of V3).
  Input [..., I] -> float32 [..., out or units].
  """
  layers: int = 2
  units: int = 256
  act: str = 'silu'
  norm: str = 'rms'
  out: Optional[int] = None
  outscale: float = 1.0
  winit: str = 'trunc_normal'
  norm_eps: float = 1e-4
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    act = get_act(self.act)
    _check('norm', self.norm, NORMS)
    x = x.astype(_dtype(self.dtype))
    for i in range(self.layers):
      x = dense(self.units, self.winit, 1.0, dtype=self.dtype, name=f'linear{i}')(x)
      x = Norm(self.norm, self.norm_eps, self.dtype, name=f'norm{i}')(x)
      x = act(x)
    if self.out is not None:
      x = dense(self.out, self.winit, self.outscale, dtype=self.dtype, name='out')(x)
    return x.astype(jnp.float32)


def _image_to_float(image):
  if image.dtype == jnp.uint8:
    return image.astype(jnp.float32) / 255.0 - 0.5
  return image.astype(jnp.float32) - 0.5


class ImageEncoder(nn.Module):
  """Convolutional image encoder: [..., H, W, C] -> float32 [..., F].

  Layer i has depth * mults[i] channels, `kernel`, stride 2 and `padding`,
  followed by Norm and act; the output is the flattened last feature map.
    V1/V2/PlaNet: depth 32 (V2: 48), mults (1,2,4,8), kernel 4, 'VALID', ELU,
      norm 'none'. 64x64 -> 2x2x256 -> 1024 (depth 32).
    V3: depth by size, mults (2,3,4,4), kernel 5, 'SAME', SiLU, RMSNorm.
      64x64 -> 4x4x(4 depth). `downsample='maxpool'` is the V3 reference code's
      default: a stride-1 conv, 2x2 max pooling, then Norm and act (about 4x
      the conv FLOPs of `downsample='stride'`, which is the cheaper option).
  Pixels: uint8 -> x / 255 - 0.5; float images are taken in [0, 1], minus 0.5.
  """
  depth: int = 32
  mults: Sequence[int] = (1, 2, 4, 8)
  kernel: int = 4
  padding: str = 'VALID'
  act: str = 'elu'
  norm: str = 'none'
  downsample: str = 'stride'
  winit: str = 'trunc_normal'
  norm_eps: float = 1e-4
  dtype: str = 'float32'
  conv_grad: str = 'auto'   # convolution weight gradients: common.nn.conv.WEIGHT_GRADS

  @nn.compact
  def __call__(self, image):
    if image.ndim < 3:
      raise ValueError(f'image: expected [..., H, W, C], got shape {image.shape}.')
    _check('padding', self.padding, ('VALID', 'SAME'))
    _check('downsample', self.downsample, DOWNSAMPLES)
    _check('norm', self.norm, NORMS)
    act = get_act(self.act)
    lead = image.shape[:-3]
    x = _image_to_float(image).reshape((-1,) + image.shape[-3:]).astype(_dtype(self.dtype))
    for i, mult in enumerate(self.mults):
      stride = 2 if self.downsample == 'stride' else 1
      x = nn.Conv(self.depth * mult, (self.kernel, self.kernel), (stride, stride), self.padding,
                  kernel_init=initializer(self.winit), dtype=_dtype(self.dtype),
                  param_dtype=jnp.float32, conv_general_dilated=conv.conv_fn(self.conv_grad),
                  name=f'conv{i}')(x)
      if self.downsample == 'maxpool':
        x = max_pool_2x2(x)
      x = Norm(self.norm, self.norm_eps, dtype=self.dtype, name=f'norm{i}')(x)
      x = act(x)
      if min(x.shape[1:3]) < 1:
        raise ValueError(f'image: {image.shape[-3:]} is too small for {len(self.mults)} layers.')
    return x.reshape(lead + (-1,)).astype(jnp.float32)


def max_pool_2x2(x):
  """2x2 max pooling with stride 2 ('VALID') on [N, H, W, C], as the max of four strided slices.

  Same values as `nn.max_pool(x, (2, 2), (2, 2))`. Its gradient is elementwise
  selects, where XLA CPU lowers reduce-window's gradient through materialised
  index tensors and a scatter: ~10% less CPU time per size1m DreamerV3 step.
  """
  x = x[:, :x.shape[1] // 2 * 2, :x.shape[2] // 2 * 2]
  return jnp.maximum(jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
                     jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


def upsample_repeat(x):
  """Nearest-neighbour 2x upsampling: [N, H, W, C] -> [N, 2H, 2W, C].

  out[n, i, j, c] = x[n, i // 2, j // 2, c] (the DreamerV3 reference decoder's
  `x.repeat(2, -2).repeat(2, -3)`), written as broadcast + reshape.
  """
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
  return x.reshape((n, 2 * h, 2 * w, c))


# Transposed-conv kernels that grow a 1x1 map to the image size with 'VALID'
# stride-2 layers: size -> 2 (size - 1) + k. 64 is the V1/V2 reference
# (5, 5, 6, 6); 96 is our choice (no reference exists): 1 -> 7 -> 20 -> 46 -> 96.
VALID_DECODER_KERNELS = {64: (5, 5, 6, 6), 96: (7, 8, 8, 6)}


class ImageDecoder(nn.Module):
  """Transposed-convolution image decoder: [..., F] -> float32 [..., H, W, C].

  padding 'VALID' (PlaNet/V1/V2, App. A): Linear(32 depth) -> 1x1 map ->
    transposed convs with depth*mults[-2], ..., depth*mults[0], C channels,
    stride 2 and `kernels` (default from VALID_DECODER_KERNELS by height), act
    between them. Output activation 'none': the mean in the encoder's
    x/255 - 0.5 space.
  padding 'SAME' (V3, App. B): Linear to a (H / 2^L) x (W / 2^L) x depth *
    mults[-1] map -> Norm -> act -> transposed convs (kernel, stride 2, 'SAME')
    with depth*mults[-2..0] channels, Norm, act -> a last one to C channels
    (init scaled by `outscale`). Output activation 'sigmoid': the mean of the
    pixels in [0, 1] (x / 255) as in the V3 reference.
    `upsample='repeat'` (the DreamerV3 reference code's default): each stage
    instead repeats every pixel 2x2 (nearest-neighbour upsampling) and applies
    a stride-1 'same' conv with `kernel`; about 4x the conv FLOPs of
    `upsample='transpose'` (stride-2 transposed convs), which is the cheaper
    option. The first map comes from one dense Linear of the features, or with
    `bspace` G (the V3 reference code's default, `rssm.py` Decoder, G = 8) from
    two paths: a G-block BlockLinear of deter (block g fills channels g of every
    pixel) plus Linear(2 units) -> Norm -> act -> Linear of the flattened stoch,
    summed, then Norm and act. `deter` (the size of the features' leading deter
    part) and `units` are needed then.
  """
  shape: Sequence[int] = (64, 64, 3)
  depth: int = 32
  mults: Sequence[int] = (1, 2, 4, 8)
  kernel: int = 4
  kernels: Optional[Sequence[int]] = None
  padding: str = 'VALID'
  act: str = 'elu'
  norm: str = 'none'
  output: str = 'none'
  outscale: float = 1.0
  upsample: str = 'transpose'
  bspace: int = 0           # 'SAME' only: blocks of the deter path of the first layer; 0 = dense
  deter: int = 0            # bspace: features are [deter (this size), stoch]
  units: int = 0            # bspace: the stoch path's hidden layer has 2 * units
  winit: str = 'trunc_normal'
  norm_eps: float = 1e-4
  dtype: str = 'float32'
  conv_grad: str = 'auto'   # convolution weight gradients: common.nn.conv.WEIGHT_GRADS

  @nn.compact
  def __call__(self, feat):
    if feat.ndim < 1:
      raise ValueError(f'feat: expected [..., F], got shape {feat.shape}.')
    _check('padding', self.padding, ('VALID', 'SAME'))
    _check('upsample', self.upsample, UPSAMPLES)
    if self.upsample == 'repeat' and self.padding != 'SAME':
      raise ValueError("upsample: 'repeat' needs padding='SAME'; use upsample='transpose' for VALID.")
    _check('output', self.output, ('none', 'sigmoid'))
    _check('norm', self.norm, NORMS)
    height, width, channels = self.shape
    act = get_act(self.act)
    dtype = _dtype(self.dtype)
    lead = feat.shape[:-1]
    x = feat.reshape((-1, feat.shape[-1])).astype(dtype)
    layers = len(self.mults)
    conv_kw = dict(dtype=dtype, param_dtype=jnp.float32)
    if self.padding == 'VALID':
      kernels = self.kernels or VALID_DECODER_KERNELS.get(height)
      if kernels is None or len(kernels) != layers:
        raise ValueError(
            f'kernels: need {layers} transposed-conv kernels for a {height}x{width} VALID decoder '
            f'(known defaults: {VALID_DECODER_KERNELS}); pass kernels=.')
      x = dense(32 * self.depth, self.winit, dtype=self.dtype, name='linear')(x)
      x = x[:, None, None, :]
      channel_list = [self.depth * m for m in reversed(self.mults[:-1])] + [channels]
      for i, (ch, k) in enumerate(zip(channel_list, kernels)):
        last = i == layers - 1
        x = conv.ConvTranspose(ch, (k, k), (2, 2), 'VALID', name=f'deconv{i}',
                               kernel_init=initializer(self.winit, self.outscale if last else 1.0),
                               weight_grad=self.conv_grad, **conv_kw)(x)
        if not last:
          x = act(Norm(self.norm, self.norm_eps, dtype=self.dtype, name=f'norm{i}')(x))
    else:
      factor = 2 ** layers
      if height % factor or width % factor:
        raise ValueError(f'shape: {height}x{width} is not divisible by 2^{layers} for a SAME decoder.')
      minres = (height // factor, width // factor)
      top = self.depth * self.mults[-1]
      if self.bspace:
        x = self._block_space(x, minres, top, act)
      else:
        x = dense(minres[0] * minres[1] * top, self.winit, dtype=self.dtype, name='linear')(x)
        x = x.reshape((-1,) + minres + (top,))
      x = act(Norm(self.norm, self.norm_eps, dtype=self.dtype, name='linear_norm')(x))
      channel_list = [self.depth * m for m in reversed(self.mults[:-1])] + [channels]
      for i, ch in enumerate(channel_list):
        last = i == layers - 1
        init = initializer(self.winit, self.outscale if last else 1.0)
        if self.upsample == 'repeat':
          x = upsample_repeat(x)
          x = nn.Conv(ch, (self.kernel, self.kernel), (1, 1), 'SAME', name=f'conv{i}',
                      kernel_init=init, conv_general_dilated=conv.conv_fn(self.conv_grad),
                      **conv_kw)(x)
        else:
          x = conv.ConvTranspose(ch, (self.kernel, self.kernel), (2, 2), 'SAME',
                                 name=f'deconv{i}', kernel_init=init, weight_grad=self.conv_grad,
                                 **conv_kw)(x)
        if not last:
          x = act(Norm(self.norm, self.norm_eps, dtype=self.dtype, name=f'norm{i}')(x))
    if x.shape[1:] != (height, width, channels):
      raise ValueError(f'kernels: the decoder makes {x.shape[1:]}, not {tuple(self.shape)}; '
                       'choose kernels that reach the image size.')
    x = x.astype(jnp.float32)
    if self.output == 'sigmoid':
      x = jax.nn.sigmoid(x)
    return x.reshape(lead + (height, width, channels))

  def _block_space(self, feat, minres, top, act):
    """The first map [N, h, w, top] as the sum of a block-linear deter path and a stoch MLP."""
    groups, deter = self.bspace, self.deter
    if not 0 < deter < feat.shape[-1] or deter % groups or top % groups or not self.units:
      raise ValueError(f'bspace={groups}: needs features [deter, stoch] with deter ({deter}) and '
                       f'the top channels ({top}) divisible by it, and units > 0 ({self.units}).')
    batch, (h, w) = feat.shape[0], minres
    x0 = feat[:, :deter].reshape((batch, groups, -1)).swapaxes(0, 1)         # [G, N, D / G]
    x0 = BlockLinear(h * w * top, groups, winit=self.winit, dtype=self.dtype, name='space0')(x0)
    x0 = x0.reshape((groups, batch, h, w, top // groups))
    x0 = x0.transpose((1, 2, 3, 0, 4)).reshape((batch, h, w, top))           # channel g * c
    x1 = dense(2 * self.units, self.winit, dtype=self.dtype, name='space1')(feat[:, deter:])
    x1 = act(Norm(self.norm, self.norm_eps, dtype=self.dtype, name='space1_norm')(x1))
    x1 = dense(h * w * top, self.winit, dtype=self.dtype, name='space2')(x1)
    return x0 + x1.reshape((batch, h, w, top))


def _check_cell_inputs(state, inputs, size):
  """Recurrent cells take state [B, size] and inputs [B, I]."""
  chex.assert_rank(state, 2, custom_message='state: expected [B, D]')
  chex.assert_rank(inputs, 2, custom_message='inputs: expected [B, I]')
  chex.assert_equal_shape_prefix([state, inputs], 1, custom_message='state, inputs: batch sizes differ')
  if state.shape[-1] != size:
    raise ValueError(f'state: expected [B, {size}], got {state.shape}.')


class GRUCell(nn.Module):
  """GRU cell of the DreamerV2 reference code (`common/nn/nets.py` GRUCell, App. C).

    [r, c, u] = Norm(W [x, h] + b)          (one Linear for all gates)
    r = sigmoid(r); c = act(r * c); u = sigmoid(u + update_bias)
    h' = u * c + (1 - u) * h
  The reset gate scales the whole candidate pre-activation (not only its
  recurrent part as in Cho et al. 2014); the Linear keeps its bias before the
  norm, as the reference's does. V2: norm 'layer' (Keras epsilon 1e-3),
  update_bias -1. norm 'none' with update_bias 0 is a plain GRU of this form.
  __call__(state [B, D], inputs [B, I]) -> new state, float32 [B, D].
  """
  size: int
  norm: str = 'layer'
  act: str = 'tanh'
  update_bias: float = -1.0
  winit: str = 'trunc_normal'
  norm_eps: float = 1e-4
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, state, inputs):
    _check_cell_inputs(state, inputs, self.size)
    _check('norm', self.norm, NORMS)
    x = jnp.concatenate([inputs, state], -1).astype(_dtype(self.dtype))
    parts = dense(3 * self.size, self.winit, dtype=self.dtype, name='linear')(x)
    parts = Norm(self.norm, self.norm_eps, self.dtype, name='norm')(parts)
    parts = parts.astype(jnp.float32)
    reset, cand, update = jnp.split(parts, 3, -1)
    reset = jax.nn.sigmoid(reset)
    cand = get_act(self.act)(reset * cand)
    update = jax.nn.sigmoid(update + self.update_bias)
    return update * cand + (1 - update) * state.astype(jnp.float32)


class ClassicGRUCell(nn.Module):
  """TensorFlow's GRUBlockCell (PlaNet reference, `models/rssm.py`): Cho et al.'s GRU.

    [r, u] = sigmoid([x, h] W_ru + b_ru)           (b_ru starts at 1: u ~ 0.73 keeps h)
    c      = act([x, r * h] W_c + b_c)             (the reset gate acts on h before W_c)
    h'     = u * h + (1 - u) * c
  W_ru [I + D, 2D] and W_c [I + D, D] glorot-uniform, b_c zeros.
  __call__(state [B, D], inputs [B, I]) -> new state, float32 [B, D].
  """
  size: int
  act: str = 'tanh'
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, state, inputs):
    _check_cell_inputs(state, inputs, self.size)
    dtype = _dtype(self.dtype)
    fan_in = inputs.shape[-1] + self.size
    w_ru = self.param('w_ru', jax.nn.initializers.glorot_uniform(), (fan_in, 2 * self.size),
                      jnp.float32)
    b_ru = self.param('b_ru', jax.nn.initializers.ones, (2 * self.size,), jnp.float32)
    w_c = self.param('w_c', jax.nn.initializers.glorot_uniform(), (fan_in, self.size),
                     jnp.float32)
    b_c = self.param('b_c', jax.nn.initializers.zeros, (self.size,), jnp.float32)
    h = state.astype(jnp.float32)
    x = inputs.astype(dtype)
    gates = jnp.concatenate([x, h.astype(dtype)], -1) @ w_ru.astype(dtype)
    reset, update = jnp.split(jax.nn.sigmoid(gates.astype(jnp.float32) + b_ru), 2, -1)
    cand = jnp.concatenate([x, (reset * h).astype(dtype)], -1) @ w_c.astype(dtype)
    cand = get_act(self.act)(cand.astype(jnp.float32) + b_c)
    return update * h + (1 - update) * cand


class KerasGRUCell(nn.Module):
  """tf.keras.layers.GRUCell as TF 2 builds it by default (DreamerV1 reference, `models.py`).

    z  = sigmoid(x W_z + b_z + h U_z + c_z)
    r  = sigmoid(x W_r + b_r + h U_r + c_r)
    h~ = act(x W_h + b_h + r * (h U_h + c_h))       (reset_after: r scales h U_h + c_h only)
    h' = z * h + (1 - z) * h~
  W [I, 3D] glorot-uniform, U [D, 3D] orthogonal, biases b, c zeros; gate order [z, r, h].
  __call__(state [B, D], inputs [B, I]) -> new state, float32 [B, D].
  """
  size: int
  act: str = 'tanh'
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, state, inputs):
    _check_cell_inputs(state, inputs, self.size)
    dtype = _dtype(self.dtype)
    kernel = self.param('kernel', jax.nn.initializers.glorot_uniform(),
                        (inputs.shape[-1], 3 * self.size), jnp.float32)
    recurrent = self.param('recurrent_kernel', jax.nn.initializers.orthogonal(),
                           (self.size, 3 * self.size), jnp.float32)
    bias = self.param('bias', jax.nn.initializers.zeros, (2, 3 * self.size), jnp.float32)
    x = (inputs.astype(dtype) @ kernel.astype(dtype)).astype(jnp.float32) + bias[0]
    h = (state.astype(dtype) @ recurrent.astype(dtype)).astype(jnp.float32) + bias[1]
    x_z, x_r, x_h = jnp.split(x, 3, -1)
    h_z, h_r, h_h = jnp.split(h, 3, -1)
    update = jax.nn.sigmoid(x_z + h_z)
    reset = jax.nn.sigmoid(x_r + h_r)
    cand = get_act(self.act)(x_h + reset * h_h)
    return update * state.astype(jnp.float32) + (1 - update) * cand


class BlockLinear(nn.Module):
  """Block-diagonal Linear layer on group-major inputs: [G, ..., I] -> [G, ..., features / G].

  Group g has its own kernel [I, features / G] (DreamerV3, App. B, block GRU).
  Fan-in for the initialiser is G * I, the whole input, as the reference code computes
  it (danijar/dreamerv3 embodied/jax/nets.py, Initializer.compute_fans of the [G, I, O]
  kernel), so each block starts sqrt(G) smaller than a dense layer on its own I inputs.
  Groups lead so the batched matmul writes its natural layout: with groups
  second to last, XLA CPU transposed every output inside the following
  elementwise fusion (the block GRU took ~1.4-1.8x longer, forward and gradient).
  """
  features: int
  blocks: int
  outscale: float = 1.0
  winit: str = 'trunc_normal'
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x):
    if x.ndim < 2 or x.shape[0] != self.blocks:
      raise ValueError(f'x: expected [{self.blocks}, ..., I], got {x.shape}.')
    if self.features % self.blocks:
      raise ValueError(f'features: {self.features} is not divisible by blocks={self.blocks}.')
    out = self.features // self.blocks
    # No batch axis: variance_scaling multiplies the fans by the G 'receptive field'.
    init = initializer(self.winit, self.outscale, in_axis=-2, out_axis=-1)
    kernel = self.param('kernel', init, (self.blocks, x.shape[-1], out), jnp.float32)
    bias = self.param('bias', jax.nn.initializers.zeros, (self.blocks, out), jnp.float32)
    dtype = _dtype(self.dtype)
    y = jnp.einsum('g...i,gio->g...o', x.astype(dtype), kernel.astype(dtype))
    return y + bias.astype(dtype).reshape((self.blocks,) + (1,) * (x.ndim - 2) + (out,))


class BlockGRU(nn.Module):
  """DreamerV3's block GRU (Hafner et al. 2023, App. B "block-diagonal GRU").

  The state h [B, D] is split into G blocks h_g. Each block sees its own state
  block and the whole shared input x:
    z_g = [h_g, x];  `hidden_layers` x (z_g = act(Norm(BlockLinear(z_g))))
    [r, c, u]_g = BlockLinear(z_g)    (3 D / G units per block)
    r = sigmoid(r); c = tanh(r * c); u = sigmoid(u + update_bias)
    h' = u * c + (1 - u) * h
  so the recurrent weights are block-diagonal. As in the reference, the
  hidden-layer Norm runs over the full D-vector (`block_norm=False`), which
  couples blocks only through the normaliser's scale; `block_norm=True`
  normalises each block on its own, making the blocks fully independent apart
  from the shared input.
  __call__(state [B, D], inputs [B, I]) -> new state, float32 [B, D].
  """
  size: int
  blocks: int = 8
  hidden_layers: int = 1
  act: str = 'silu'
  norm: str = 'rms'
  block_norm: bool = False
  update_bias: float = -1.0
  winit: str = 'trunc_normal'
  norm_eps: float = 1e-4
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, state, inputs):
    _check_cell_inputs(state, inputs, self.size)
    if self.size % self.blocks:
      raise ValueError(f'blocks: size {self.size} is not divisible by blocks={self.blocks}.')
    act = get_act(self.act)
    batch, groups = state.shape[0], self.blocks
    dtype = _dtype(self.dtype)
    # Group-major [G, B, ...] inside (see BlockLinear); [B, D] at the boundaries.
    to_groups = lambda v: v.reshape((batch, groups, -1)).swapaxes(0, 1)
    to_batch = lambda v: v.swapaxes(0, 1).reshape((batch, -1))
    h = to_groups(state.astype(dtype))
    shared = jnp.broadcast_to(inputs.astype(dtype)[None], (groups, batch, inputs.shape[-1]))
    x = jnp.concatenate([h, shared], -1)
    for i in range(self.hidden_layers):
      x = BlockLinear(self.size, groups, winit=self.winit, dtype=self.dtype, name=f'hidden{i}')(x)
      if self.block_norm:
        x = Norm(self.norm, self.norm_eps, self.dtype, name=f'norm{i}')(x)
      else:
        x = to_groups(Norm(self.norm, self.norm_eps, self.dtype, name=f'norm{i}')(to_batch(x)))
      x = act(x)
    x = BlockLinear(3 * self.size, groups, winit=self.winit, dtype=self.dtype, name='gates')(x)
    x = x.astype(jnp.float32)
    reset, cand, update = [to_batch(g) for g in jnp.split(x, 3, -1)]
    reset = jax.nn.sigmoid(reset)
    cand = jnp.tanh(reset * cand)
    update = jax.nn.sigmoid(update + self.update_bias)
    return update * cand + (1 - update) * state.astype(jnp.float32)

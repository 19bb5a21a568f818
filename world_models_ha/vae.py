"""V: the convolutional VAE of World Models (Ha & Schmidhuber, 2018, Sec. 2.1 and Appendix A.1).

Encoder: four 4x4 stride-2 valid convolutions (32, 64, 128, 256 channels, ReLU) take a 64x64x3
frame to 2x2x256, then two dense heads give the mean and log-variance of z. Decoder: a dense
layer to 1024 units viewed as a 1x1x1024 map, then deconvolutions with kernels 5, 5, 6, 6
(128, 64, 32, 3 channels; ReLU, sigmoid at the end) back to 64x64x3.

Loss (the reference code's): squared error summed over pixels plus the KL to N(0, I) summed over
latent dims and clipped below at `kl_tolerance * z_size` per example, both averaged over the batch.
"""
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from common.nn import conv

IMAGE_SHAPE = (64, 64, 3)


class VAE(nn.Module):
  """Convolutional VAE on 64x64 RGB frames in [0, 1]."""
  z_size: int = 32

  def setup(self):
    self.encoder_convs = [
        nn.Conv(depth, (4, 4), strides=(2, 2), padding='VALID', name=f'enc_conv{i}',
                # weight gradients as shifted products on CPU (common/nn/conv.py), same values
                conv_general_dilated=conv.conv_fn('auto'))
        for i, depth in enumerate((32, 64, 128, 256))]
    self.mean_head = nn.Dense(self.z_size, name='enc_mean')
    self.logvar_head = nn.Dense(self.z_size, name='enc_logvar')
    self.decoder_dense = nn.Dense(1024, name='dec_dense')
    self.decoder_deconvs = [
        conv.ConvTranspose(depth, (kernel, kernel), strides=(2, 2), padding='VALID',
                           name=f'dec_deconv{i}')
        for i, (depth, kernel) in enumerate(((128, 5), (64, 5), (32, 6), (3, 6)))]

  def encode(self, image):
    """image [..., 64, 64, 3] float in [0, 1] -> (mean, logvar), each [..., Z]."""
    batch_shape = image.shape[:-3]
    x = image.reshape((-1,) + IMAGE_SHAPE)
    for conv in self.encoder_convs:
      x = nn.relu(conv(x))
    x = x.reshape((x.shape[0], -1))
    mean, logvar = self.mean_head(x), self.logvar_head(x)
    return mean.reshape(batch_shape + (-1,)), logvar.reshape(batch_shape + (-1,))

  def decode(self, z):
    """z [..., Z] -> reconstruction [..., 64, 64, 3] in [0, 1]."""
    batch_shape = z.shape[:-1]
    x = self.decoder_dense(z.reshape((-1, self.z_size)))
    x = x.reshape((-1, 1, 1, 1024))
    for i, deconv in enumerate(self.decoder_deconvs):
      x = deconv(x)
      x = nn.sigmoid(x) if i == len(self.decoder_deconvs) - 1 else nn.relu(x)
    return x.reshape(batch_shape + IMAGE_SHAPE)

  def __call__(self, image, key):
    """Encode, sample z = mean + exp(logvar / 2) * eps, decode. Returns (recon, mean, logvar)."""
    mean, logvar = self.encode(image)
    z = sample_z(mean, logvar, key)
    return self.decode(z), mean, logvar


def to_float(image):
  """uint8 frames [..., 64, 64, 3] -> float32 in [0, 1]."""
  return image.astype(jnp.float32) / 255.0


def sample_z(mean, logvar, key):
  """Reparameterised sample z = mean + exp(logvar / 2) * eps, eps ~ N(0, I); shapes [..., Z]."""
  return mean + jnp.exp(logvar / 2.0) * jax.random.normal(key, mean.shape, mean.dtype)


def init_params(vae: VAE, key) -> Any:
  """Parameters of `vae` for one 64x64x3 frame."""
  dummy = jnp.zeros((1,) + IMAGE_SHAPE, jnp.float32)
  return vae.init(key, dummy, key)


def encode(vae: VAE, params, image):
  """uint8 or float frames [..., 64, 64, 3] -> (mean, logvar) [..., Z]."""
  if image.dtype == jnp.uint8:
    image = to_float(image)
  return vae.apply(params, image, method=VAE.encode)


def decode(vae: VAE, params, z):
  """z [..., Z] -> frames [..., 64, 64, 3] float in [0, 1]."""
  return vae.apply(params, z, method=VAE.decode)


def loss_fn(vae: VAE, params, image, key, kl_tolerance: float = 0.5):
  """World Models VAE loss on uint8 frames [B, 64, 64, 3]; returns (loss [], metrics).

  loss = mean_b sum_pixels (x - x_hat)^2 + mean_b max(KL_b, kl_tolerance * Z),
  KL_b = -1/2 sum_z (1 + logvar - mean^2 - exp(logvar)).
  """
  chex.assert_rank(image, 4)
  if tuple(image.shape[1:]) != IMAGE_SHAPE:
    raise ValueError(f'image: expected frames [B, 64, 64, 3], got {image.shape}')
  target = to_float(image) if image.dtype == jnp.uint8 else image
  recon, mean, logvar = vae.apply(params, target, key)
  recon_loss = jnp.mean(jnp.sum(jnp.square(target - recon), axis=(1, 2, 3)))
  kl = -0.5 * jnp.sum(1.0 + logvar - jnp.square(mean) - jnp.exp(logvar), axis=-1)
  kl_loss = jnp.mean(jnp.maximum(kl, kl_tolerance * vae.z_size))
  loss = recon_loss + kl_loss
  return loss, {'vae/loss': loss, 'vae/recon_loss': recon_loss, 'vae/kl_loss': kl_loss,
                'vae/kl': jnp.mean(kl)}

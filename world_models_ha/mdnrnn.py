"""M: the MDN-RNN of World Models (Ha & Schmidhuber, 2018, Sec. 2.2 and Appendix A.2).

An LSTM reads [z_t, a_t] and a mixture-density head models P(z_{t+1} | a_t, z_t, h_t) as a
mixture of K Gaussians per latent dimension (K = 5), with a sampling temperature tau. For Doom it
also predicts the episode-ends flag (the reference's "restart" logit), weighted by a factor on
positive examples since they are rare.

Output layout per step: `logmix`, `mean`, `logstd` each [..., Z, K] (logmix normalised over K),
and `done_logit` [...] (zeros when the model does not predict it).

With `restart_input` (the Doom reference, doomrnn.py): each step also reads the restart flag,
1 on an episode's first frame, and the LSTM state is zeroed where it is set, so one long stream
of joined episodes trains the model on whole episodes.
"""
from typing import Any, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LOG_SQRT_TWO_PI = float(np.log(np.sqrt(2.0 * np.pi)))


class MDNOutput(NamedTuple):
  logmix: jax.Array      # [..., Z, K], log mixture weights (normalised)
  mean: jax.Array        # [..., Z, K]
  logstd: jax.Array      # [..., Z, K]
  done_logit: jax.Array  # [...]


class MDNRNN(nn.Module):
  """LSTM with a per-dimension Gaussian-mixture head (and optionally a done logit)."""
  z_size: int = 32
  hidden: int = 256
  mixtures: int = 5
  predict_done: bool = False
  restart_input: bool = False   # read the restart flag and zero the state where it is set

  def setup(self):
    self.cell = nn.OptimizedLSTMCell(self.hidden, name='lstm')
    self.head = nn.Dense(self.z_size * self.mixtures * 3 + int(self.predict_done), name='mdn')

  def __call__(self, carry, z, action, restart=None):
    """One step. carry (c, h) [B, H]; z [B, Z]; action [B, A]; restart [B] (with
    `restart_input`) -> (carry, MDNOutput)."""
    inputs = [z, action]
    if self.restart_input:
      if restart is None:
        raise ValueError('restart: this MDN-RNN reads the restart flag [B]; pass it.')
      restart = jnp.asarray(restart, jnp.float32)
      carry = jax.tree.map(lambda x: jnp.where(restart[:, None] > 0.5, 0.0, x), carry)
      inputs.append(restart[:, None])
    carry, h = self.cell(carry, jnp.concatenate(inputs, -1))
    out = self.head(h)
    mix = out[..., :self.z_size * self.mixtures * 3]
    mix = mix.reshape(out.shape[:-1] + (self.z_size, 3, self.mixtures))
    logmix = jax.nn.log_softmax(mix[..., 0, :], axis=-1)
    if self.predict_done:
      done_logit = out[..., -1]
    else:
      done_logit = jnp.zeros(out.shape[:-1], out.dtype)
    return carry, MDNOutput(logmix, mix[..., 1, :], mix[..., 2, :], done_logit)


def initial_carry(model: MDNRNN, batch_size: int):
  """Zero LSTM state (c, h), each [batch_size, hidden]."""
  zeros = jnp.zeros((batch_size, model.hidden), jnp.float32)
  return (zeros, zeros)


FORGET_BIAS = 1.0   # the reference's LayerNormBasicLSTMCell adds 1 to the forget gate


def init_params(model: MDNRNN, key, action_dim: int) -> Any:
  """Parameters, with the LSTM's forget-gate bias starting at 1 (equivalent to the reference's
  constant forget_bias 1.0 plus a zero-initialised learnable bias)."""
  carry = initial_carry(model, 1)
  params = model.init(key, carry, jnp.zeros((1, model.z_size)), jnp.zeros((1, action_dim)),
                      jnp.zeros((1,)))
  forget = params['params']['lstm']['hf']
  params['params']['lstm']['hf'] = dict(forget, bias=jnp.full_like(forget['bias'], FORGET_BIAS))
  return params


def step(model: MDNRNN, params, carry, z, action, restart=None):
  """One LSTM step: (carry, z [B, Z], action [B, A], restart [B]) -> (carry, MDNOutput [B])."""
  chex.assert_rank([z, action], 2)
  return model.apply(params, carry, z, action, restart)


def unroll(model: MDNRNN, params, z, action, carry=None, restart=None):
  """Scan over time: z [B, T, Z], action [B, T, A], restart [B, T] (with `restart_input`)
  -> (MDNOutput [B, T, ...], final carry)."""
  chex.assert_rank([z, action], 3)
  chex.assert_equal_shape_prefix([z, action], 2)
  if carry is None:
    carry = initial_carry(model, z.shape[0])
  if restart is None:
    restart = jnp.zeros(z.shape[:2], jnp.float32)

  def body(carry, inputs):
    return model.apply(params, carry, *inputs)

  inputs = (jnp.swapaxes(z, 0, 1), jnp.swapaxes(action, 0, 1), jnp.swapaxes(restart, 0, 1))
  carry, out = jax.lax.scan(body, carry, inputs)
  return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out), carry


def mixture_nll(logmix, mean, logstd, target):
  """-log sum_k pi_k N(target; mean_k, exp(logstd_k)^2) per latent dim.

  logmix, mean, logstd [..., Z, K] (logmix normalised over K); target [..., Z] -> [..., Z].
  """
  chex.assert_equal_shape([logmix, mean, logstd])
  chex.assert_equal_shape_prefix([logmix, target], target.ndim)
  normalised = (target[..., None] - mean) * jnp.exp(-logstd)
  log_normal = -0.5 * jnp.square(normalised) - logstd - LOG_SQRT_TWO_PI
  return -jax.nn.logsumexp(logmix + log_normal, axis=-1)


def loss_fn(model: MDNRNN, params, batch, key, done_weight: float = 10.0, carry=None):
  """MDN-RNN loss on encoded sequences; returns (loss [], (metrics, final carry)).

  batch: `mean`, `logvar` [B, T+1, Z] (the VAE's posteriors, z is sampled from them as the
  reference does), `action` [B, T, A], `done` [B, T] (episode ended after action t; with
  `restart_input`, the next step's restart flag), `mask` [B, T] (valid transitions) and, with
  `restart_input`, `restart` [B, T] (the input flags). The z-loss is the mixture NLL averaged
  over valid steps and latent dims; with `predict_done` the done loss is the sigmoid
  cross-entropy with positives weighted by `done_weight`. `carry` (default zeros) starts the
  unroll, so consecutive chunks of one stream continue each other's state.
  """
  names = ('mean', 'logvar', 'action', 'done', 'mask') + (
      ('restart',) if model.restart_input else ())
  for name in names:
    if name not in batch:
      raise KeyError(f'batch: missing key {name!r} (need {", ".join(names)})')
  chex.assert_rank([batch['mean'], batch['action'], batch['mask']], [3, 3, 2])
  z = batch['mean'] + jnp.exp(batch['logvar'] / 2.0) * jax.random.normal(
      key, batch['mean'].shape)
  out, carry = unroll(model, params, z[:, :-1], batch['action'], carry, batch.get('restart'))
  mask = batch['mask'].astype(jnp.float32)
  count = jnp.maximum(mask.sum(), 1.0)
  nll = mixture_nll(out.logmix, out.mean, out.logstd, z[:, 1:]).mean(-1)
  z_loss = (nll * mask).sum() / count
  metrics = {'mdnrnn/z_loss': z_loss}
  loss = z_loss
  if model.predict_done:
    done = batch['done'].astype(jnp.float32)
    cross_entropy = (jnp.maximum(out.done_logit, 0.0) - out.done_logit * done
                     + jnp.log1p(jnp.exp(-jnp.abs(out.done_logit))))
    weight = 1.0 + (done_weight - 1.0) * done
    done_loss = (weight * cross_entropy * mask).sum() / count
    loss = loss + done_loss
    metrics['mdnrnn/done_loss'] = done_loss
    metrics['mdnrnn/done_accuracy'] = (((out.done_logit > 0) == (done > 0.5)) * mask).sum() / count
  metrics['mdnrnn/loss'] = loss
  return loss, (metrics, carry)


def sample(out: MDNOutput, key, temperature: float = 1.0):
  """Sample z_{t+1} [..., Z] from the mixture at temperature tau (the reference's rule):
  mixture weights softmax(logmix / tau), then mean + exp(logstd) * sqrt(tau) * eps."""
  mix_key, noise_key = jax.random.split(key)
  component = jax.random.categorical(mix_key, out.logmix / temperature, axis=-1)
  pick = lambda x: jnp.take_along_axis(x, component[..., None], axis=-1)[..., 0]
  mean, logstd = pick(out.mean), pick(out.logstd)
  noise = jax.random.normal(noise_key, mean.shape, mean.dtype)
  return mean + jnp.exp(logstd) * jnp.sqrt(temperature) * noise

"""C: the linear controller of World Models (Ha & Schmidhuber, 2018, Sec. 2.3).

a_t = W_c [z_t, h_t] + b_c, squashed per environment as the reference code does:
  * CarRacing: tanh, then steering in [-1, 1], gas (a + 1) / 2 in [0, 1], brake clip(a, 0, 1)
    (3 outputs; 867 parameters for z 32 and h 256).
  * DoomTakeCover: one tanh output quantised to left (-1), stay (0) or right (+1) with thresholds
    +-1/3; the reference feeds it [z, c, h] (the LSTM cell and hidden state) with no bias
    (doomrnn/model.py: 1,088 parameters for z 64 and 512 units).
"""
import chex
import jax.numpy as jnp

ACTION_KINDS = ('car_racing', 'doom')


def action_dim(kind: str) -> int:
  """Size of the environment-level action vector the controller produces."""
  _check_kind(kind)
  return 3 if kind == 'car_racing' else 1


def input_size(z_size: int, hidden: int, use_cell: bool) -> int:
  return z_size + hidden * (2 if use_cell else 1)


def init_params(num_inputs: int, num_outputs: int, bias: bool = True):
  """Zero weights and biases (the reference starts CMA-ES at zeros): {'weight': [I, O],
  'bias': [O]}; without 'bias' for the Doom controller, which has none in the reference."""
  params = {'weight': jnp.zeros((num_inputs, num_outputs), jnp.float32)}
  if bias:
    params['bias'] = jnp.zeros((num_outputs,), jnp.float32)
  return params


def features(z, carry, use_cell: bool):
  """Controller input [z, h] (or [z, c, h]): z [B, Z]; carry (c, h) each [B, H] -> [B, I]."""
  cell, hidden = carry
  chex.assert_rank([z, cell, hidden], 2)
  parts = [z, cell, hidden] if use_cell else [z, hidden]
  return jnp.concatenate(parts, axis=-1)


def act(params, inputs, kind: str):
  """Environment action from controller inputs [B, I] -> [B, action_dim(kind)] float32."""
  _check_kind(kind)
  chex.assert_rank(inputs, 2)
  if inputs.shape[-1] != params['weight'].shape[0]:
    raise ValueError(f'inputs: expected {params["weight"].shape[0]} features, got {inputs.shape[-1]}')
  raw = inputs @ params['weight']
  raw = jnp.tanh(raw + params['bias'] if 'bias' in params else raw)
  if kind == 'car_racing':
    steer, gas, brake = raw[..., 0], (raw[..., 1] + 1.0) / 2.0, jnp.clip(raw[..., 2], 0.0, 1.0)
    return jnp.stack([steer, gas, brake], axis=-1)
  return quantise_doom(raw)


def quantise_doom(value):
  """Doom action in {-1 (left), 0 (stay), +1 (right)} from a tanh output [..., 1]."""
  threshold = 1.0 / 3.0
  return jnp.where(value > threshold, 1.0, jnp.where(value < -threshold, -1.0, 0.0))


def _check_kind(kind):
  if kind not in ACTION_KINDS:
    raise ValueError(f'kind: unknown controller kind {kind!r}; use one of {ACTION_KINDS}')

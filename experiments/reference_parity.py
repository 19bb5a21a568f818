"""Numerical parity with the reference DreamerV3: the same losses and gradients from the same
parameters and batch.

    python -m experiments.reference_parity --reference DIR [--size debug] [--json OUT]

DIR is danijar/dreamerv3 at f8817c4 (`../shared/reference/dreamerv3-f8817c4` here); it is copied
to a temporary folder, patched for current JAX (`jax.jit` shardings as keywords, the patch beside
it) and imported from there, never from this project. Both agents are built with the same sizes
for vector and image inputs, with a discrete and then a continuous action space; every
parameter of the reference is copied into ours through `parameter_map.PARAMETER_TABLE` (a
parameter of either side without a counterpart is an error). Both then see the same batch, and
the script compares:
  - every loss term (the reference's names: dyn, rep, image, vector, rew, con, policy, value,
    repval) and the total loss;
  - the gradient of every parameter;
  - every parameter after one optimizer update.

Randomness. Both sides sample latents and actions with `jax.random.categorical` (one-hot
latents, discrete actions) and `jax.random.normal` (continuous actions). Inside this script
only, while the two losses are traced, these are replaced on both sides by the same
deterministic functions: the categorical draw becomes the argmax of its logits (the
straight-through gradient is untouched), the normal noise becomes zeros (the action is the
distribution's mean). `tests/common/nn/test_distributions.py` keeps the statistical tests that
our samplers have the reference's distributions.

Settings. Where FIDELITY.md keeps a deliberate difference from f8817c4 that reaches the loss,
ours is set to the reference's value so that the comparison measures code, not documented
choices; `ALIGNED_SETTINGS` lists them and the output repeats them. The optimizer's warm-up is
set to 0 on both sides, since its first update is otherwise zero and compares nothing.

The JSON holds per compared quantity ours, the reference's and the largest relative error
|a - b| / max(|b|, 1e-6), and at the top max_rel_err_losses, max_rel_err_grads,
max_rel_err_params and the list of compared losses.
"""
import argparse
import contextlib
import json
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from experiments import parameter_map
from experiments import reference_code

# Ours set to f8817c4's values where FIDELITY.md keeps a documented difference (row names).
ALIGNED_SETTINGS = {
    'agent.actor.unimix': (0.0, 'Discrete policy: f8817c4 samples a categorical without unimix'),
    'agent.replay_context': (0, 'the batch has no replay context on either side'),
    'agent.opt.warmup': (0, 'both sides: the first update of a warm-up is zero'),
}
# Sizes of the comparison (both sides; one layer per MLP at every size); debug is the CI size.
SIZES = {
    'debug': dict(deter=64, hidden=32, stoch=4, classes=4, blocks=4, depth=4, units=32),
    'size1m': dict(deter=512, hidden=64, stoch=32, classes=4, blocks=8, depth=4, units=64),
}
BATCH, LENGTH = 2, 8
# Report keys and their limits. Gradients: entries under 1e-3 of their tensor's largest carry
# float32 summation-order noise (FIDELITY.md "Float32 summation order": up to 1.2e-2 relative
# there, 5e-6 of the tensor's scale), so the relative limit holds on the others.
THRESHOLDS = {'max_rel_err_losses': 1e-4, 'max_significant_rel_err_grads': 1e-3,
              'max_scale_err_grads': 1e-4, 'max_rel_err_params': 1e-3}


def reference_config(elements, presets, size):
  s = SIZES[size]
  config = elements.Config(presets['defaults'])
  heads = ('rewhead', 'conhead', 'policy', 'value')
  return config.update({
      'agent.dyn.rssm.deter': s['deter'], 'agent.dyn.rssm.hidden': s['hidden'],
      'agent.dyn.rssm.stoch': s['stoch'], 'agent.dyn.rssm.classes': s['classes'],
      'agent.dyn.rssm.blocks': s['blocks'],
      'agent.enc.simple.depth': s['depth'], 'agent.enc.simple.units': s['units'],
      'agent.enc.simple.layers': 1,
      'agent.dec.simple.depth': s['depth'], 'agent.dec.simple.units': s['units'],
      'agent.dec.simple.layers': 1,
      **{f'agent.{h}.layers': 1 for h in heads}, **{f'agent.{h}.units': s['units'] for h in heads},
      'agent.opt.warmup': 0,
      'jax.platform': 'cpu', 'jax.compute_dtype': 'float32', 'jax.prealloc': False,
      'jax.enable_policy': False, 'batch_size': BATCH, 'batch_length': LENGTH,
      'replay_context': 0, 'logdir': tempfile.mkdtemp(prefix='dreamerv3-reference-logdir-'),
  })


# ------------------------------------------------------------------ the two configurations


def spaces(discrete):
  from common.envs.spaces import Space  # pylint: disable=g-import-not-at-top
  obs = {'image': Space(np.uint8, (64, 64, 3), 0, 255), 'vector': Space(np.float32, (5,)),
         'reward': Space(np.float32, ()), 'is_first': Space(bool, ()),
         'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
  act = Space(np.int32, (), 0, 2) if discrete else Space(np.float32, (2,), -1.0, 1.0)
  return obs, act


def our_config(size):
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top
  s = SIZES[size]
  sets = {'run.batch_size': BATCH, 'run.batch_length': LENGTH, 'run.precision': 'float32',
          'agent.rssm.deter': s['deter'], 'agent.rssm.hidden': s['hidden'],
          'agent.rssm.stoch': s['stoch'], 'agent.rssm.classes': s['classes'],
          'agent.rssm.blocks': s['blocks'],
          **{f'agent.{m}.depth': s['depth'] for m in ('encoder', 'decoder')},
          **{f'agent.{m}.mlp_units': s['units'] for m in ('encoder', 'decoder')},
          **{f'agent.{m}.units': s['units']
             for m in ('reward_head', 'continue_head', 'actor', 'critic')},
          **{key: value for key, (value, _) in ALIGNED_SETTINGS.items()}}
  argv = ['--config', 'dreamerv3', '--env', 'gym_CartPole-v1', '--size', 'debug',
          '--logdir', tempfile.mkdtemp(prefix='dreamerv3-ours-')]
  for key, value in sets.items():
    argv += ['--set', f'{key}={value}']
  return config_lib.parse(argv, configs.PRESETS, 'experiments.reference_parity')


# ------------------------------------------------------------------ errors


def scale_error(ours, reference):
  """max |a - b| / max |b|: the error against the array's scale, which float32 rounding of
  entries near zero does not inflate."""
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference), initial=0.0) /
               max(np.max(np.abs(reference), initial=0.0), 1e-12))


def significant_relative_error(ours, reference, floor=1e-3):
  """relative_error over the entries of at least `floor` times the array's largest: entries
  near zero carry float32 summation-order noise (FIDELITY.md "Float32 summation order")."""
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  keep = np.abs(reference) >= floor * np.abs(reference).max(initial=0.0)
  return relative_error(ours[keep], reference[keep]) if keep.any() else 0.0


def worst_entry_scale(ours, reference):
  """|b| / max |b| at the entry of the largest relative error: how small the entries are that
  set `relative_error`."""
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  if not reference.size:
    return 0.0
  errors = np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-6)
  worst = np.abs(reference.reshape(-1)[np.argmax(errors)])
  return float(worst / max(np.abs(reference).max(), 1e-12))


def compare_trees(ours_flat, reference, decoder_convs, dims):
  """{reference name: (ours, reference, max relative error)} over the reference's arrays."""
  out = {}
  for name, value in sorted(reference.items()):
    path, layout, _ = parameter_map.our_path(name, decoder_convs)
    index, value = parameter_map.to_our_layout(value, layout, ours_flat[path], dims)
    mine = np.asarray(ours_flat[path])[index]
    out[name] = (mine, value, relative_error(mine, value))
  return out


# ------------------------------------------------------------------ the comparison


@contextlib.contextmanager
def deterministic_sampling():
  """Within: `jax.random.categorical` is the argmax of its logits and `jax.random.normal` is
  zeros, for both implementations (see the module docstring)."""
  categorical, normal = jax.random.categorical, jax.random.normal

  def argmax(key, logits, axis=-1, shape=None, **unused):
    del key
    index = jnp.argmax(logits, axis)
    return index if shape is None else jnp.broadcast_to(index, shape)

  def zeros(key, shape=(), dtype=jnp.float32, **unused):
    del key
    return jnp.zeros(shape, dtype)

  jax.random.categorical, jax.random.normal = argmax, zeros
  try:
    yield
  finally:
    jax.random.categorical, jax.random.normal = categorical, normal


@contextlib.contextmanager
def exact_reference_twohot_mean():
  """Within: the reference's `TwoHot.pred` sums mirrored bins as (p_high - p_low) * b, as ours
  does. Its own symmetric sum of products is re-associated by XLA inside the jitted train step:
  a uniform critic then predicts -0.1675, not 0 (FIDELITY.md "Two-hot mean in float32"), which
  moves the critic output layer's first gradient; this measures the rest of the code."""
  from embodied.jax import outs  # pylint: disable=g-import-not-at-top
  original = outs.TwoHot.pred

  def pred(self):
    n = self.probs.shape[-1]
    half = n // 2
    low, high = self.probs[..., :half], self.probs[..., n - half:]
    difference = jax.lax.optimization_barrier(high - low[..., ::-1])
    middle = (self.probs[..., half:n - half] * self.bins[half:n - half]).sum(-1)
    return self.unsquash(middle + (difference * self.bins[n - half:]).sum(-1))

  outs.TwoHot.pred = pred
  try:
    yield
  finally:
    outs.TwoHot.pred = original


def make_batch(obs_space, act_space, seed=0):
  """One replayed batch [B, T] in our layout: each sequence starts an episode, and one
  ends (terminal) three steps before the end, so continue and replay losses see both."""
  rng = np.random.default_rng(seed)
  batch = {'image': rng.integers(0, 256, (BATCH, LENGTH, 64, 64, 3)).astype(np.uint8),
           'vector': rng.normal(size=(BATCH, LENGTH, 5)).astype(np.float32),
           'reward': rng.normal(size=(BATCH, LENGTH)).astype(np.float32)}
  flags = np.zeros((BATCH, LENGTH), bool)
  batch['is_first'] = flags.copy()
  batch['is_first'][:, 0] = True
  batch['is_first'][0, LENGTH - 2] = True
  batch['is_last'] = flags.copy()
  batch['is_last'][0, LENGTH - 3] = True
  batch['is_terminal'] = batch['is_last'].copy()
  if act_space.discrete:
    batch['action'] = rng.integers(0, act_space.n, (BATCH, LENGTH)).astype(np.int32)
  else:
    batch['action'] = rng.uniform(-1, 1, (BATCH, LENGTH) + act_space.shape).astype(np.float32)
  return batch


def relative_error(ours, reference):
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.max(np.abs(ours - reference) / np.maximum(np.abs(reference), 1e-6),
                      initial=0.0))


# Reference loss name -> our metric.
LOSS_NAMES = {'dyn': 'dyn_loss', 'rep': 'rep_loss', 'image': 'rec_image_loss',
              'vector': 'rec_vector_loss', 'rew': 'reward_loss', 'con': 'continue_loss',
              'policy': 'policy_loss', 'value': 'value_loss', 'repval': 'repval_loss'}


def reference_side(outer, batch, act_space):
  """(losses {name: mean}, total, grads {name: array}, params after one update) of the
  reference at its initial parameters."""
  import ninjax as nj  # pylint: disable=g-import-not-at-top
  model = outer.model
  state, carry, data = reference_code.reference_train_inputs(outer, batch)
  if act_space.discrete:
    data['action'] = data['action'].astype(jnp.int32)
  _, (carry3, obs, prevact, _) = nj.pure(model._apply_replay_context)(  # pylint: disable=protected-access
      state, carry, data)
  trainable = {k: v for k, v in state.items() if k.split('/')[0] in (
      'dyn', 'enc', 'dec', 'rew', 'con', 'pol', 'val')}
  rest = {k: v for k, v in state.items() if k not in trainable}

  def loss_fn(params):
    _, (loss, (_, _, outs, _)) = nj.pure(model.loss)(
        {**rest, **params}, carry3, obs, prevact, training=True, seed=0)
    return loss, {k: v.mean() for k, v in outs['losses'].items()}

  with deterministic_sampling(), exact_reference_twohot_mean():
    (total, losses), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(trainable)
    new_state, _ = jax.jit(lambda s, c, d: nj.pure(model.train)(s, c, d, seed=0))(
        state, carry, data)
  return ({k: float(v) for k, v in losses.items()}, float(total),
          {k: np.asarray(v) for k, v in grads.items()},
          {k: np.asarray(new_state[k]) for k in trainable})


def record_gradients():
  """An optax transformation that passes gradients through unchanged and keeps the last ones
  as its state: chained in front of our optimizer, one train step gives both the gradients
  and the update."""
  import optax  # pylint: disable=g-import-not-at-top
  init = lambda params: jax.tree.map(jnp.zeros_like, params)
  update = lambda grads, state, params=None: (grads, grads)
  return optax.GradientTransformation(init, update)


def our_side(config, obs_space, act_space, reference_params, batch):
  """The same quantities for ours, from the reference's parameters mapped into our layout.
  Gradients are read from `record_gradients` in front of our optimizer (one compile)."""
  import optax  # pylint: disable=g-import-not-at-top
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  make_optimizer = agent_lib.make_optimizer

  def recording(cfg):
    optimizer, modules = make_optimizer(cfg)
    return optax.chain(record_gradients(), optimizer), modules

  agent_lib.make_optimizer = recording
  try:
    agent = agent_lib.make_agent(config, obs_space, act_space)
  finally:
    agent_lib.make_optimizer = make_optimizer
  state = agent.init(jax.random.PRNGKey(0))
  params, slow = parameter_map.map_parameters(
      reference_params, state.params, state.slow_critic, len(config.agent.decoder.mults) - 1,
      token_dims(config))
  # init's optimizer state fits: it depends on the parameters' shapes, not their values.
  state = state.replace(params=params, slow_critic=slow)
  with deterministic_sampling():
    new_state, metrics = jax.jit(agent.train)(state, {k: jnp.asarray(v)
                                                      for k, v in batch.items()})
  losses = {ref: float(metrics[ours]) for ref, ours in LOSS_NAMES.items() if ours in metrics}
  grads = parameter_map.flatten(new_state.opt_state[0])
  return losses, float(metrics['loss']), grads, parameter_map.flatten(new_state.params)


def token_dims(config):
  """The sizes `to_our_layout` needs to reorder the posterior layer's input rows."""
  return {'deter': config.agent.rssm.deter, 'vector': config.agent.encoder.mlp_units}


def compare(reference_dir, size='debug', actions=('discrete', 'continuous')):
  """Runs both sides for each action kind; returns the JSON-able report."""
  elements, reference_agent, presets = reference_code.load_reference(reference_dir)
  report = {'reference': str(reference_dir), 'size': size,
            'aligned_settings': {k: {'value': v, 'why': why}
                                 for k, (v, why) in ALIGNED_SETTINGS.items()},
            'sampling': 'jax.random.categorical -> argmax, jax.random.normal -> zeros (both sides)',
            'reference_twohot_mean': 'exact mirrored-pair sum (ours), see exact_reference_twohot_mean',
            'cases': {}}
  for kind in actions:
    obs_space, act_space = spaces(kind == 'discrete')
    outer = reference_code.build_reference(
        elements, reference_agent, reference_config(elements, presets, size), obs_space,
        act_space, BATCH, LENGTH)
    config = our_config(size)
    convs = len(config.agent.decoder.mults) - 1
    batch = make_batch(obs_space, act_space)
    ref_losses, ref_total, ref_grads, ref_params = reference_side(outer, batch, act_space)
    our_losses, our_total, our_grads, our_params = our_side(
        config, obs_space, act_space, outer.params, batch)
    losses = {name: (our_losses.get(name, float('nan')), value,
                     relative_error(our_losses.get(name, np.nan), value))
              for name, value in ref_losses.items()}
    losses['total'] = (our_total, ref_total, relative_error(our_total, ref_total))
    grads = compare_trees(our_grads, ref_grads, convs, token_dims(config))
    params = compare_trees(our_params, ref_params, convs, token_dims(config))
    report['cases'][kind] = {
        'losses': {k: {'ours': a, 'reference': b, 'max_rel_err': e}
                   for k, (a, b, e) in losses.items()},
        'grads': {k: {'max_rel_err': e, 'scale_err': scale_error(a, b),
                      'significant_rel_err': significant_relative_error(a, b),
                      'worst_entry_scale': worst_entry_scale(a, b),
                      'ours_norm': float(np.linalg.norm(a)),
                      'reference_norm': float(np.linalg.norm(b))}
                  for k, (a, b, e) in grads.items()},
        'params': {k: {'max_rel_err': e, 'scale_err': scale_error(a, b)}
                   for k, (a, b, e) in params.items()},
    }
  cases = report['cases'].values()
  worst = lambda part, key='max_rel_err': max(
      (v[key] for c in cases for v in c[part].values()), default=float('nan'))
  report.update(max_rel_err_losses=worst('losses'), max_rel_err_grads=worst('grads'),
                max_rel_err_params=worst('params'),
                max_significant_rel_err_grads=worst('grads', 'significant_rel_err'),
                max_scale_err_grads=worst('grads', 'scale_err'),
                losses=sorted({k for c in cases for k in c['losses']}))
  return report


def _nan_safe(value):
  if isinstance(value, float) and not np.isfinite(value):
    return str(value)
  if isinstance(value, dict):
    return {k: _nan_safe(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_nan_safe(v) for v in value]
  return value


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.reference_parity', description=__doc__.split(
      '\n\n')[0])
  parser.add_argument('--reference', required=True, help='danijar/dreamerv3 at f8817c4')
  parser.add_argument('--size', default='debug', choices=sorted(SIZES))
  parser.add_argument('--actions', nargs='+', default=['discrete', 'continuous'],
                      choices=['discrete', 'continuous'])
  parser.add_argument('--json', help='write the report here')
  args = parser.parse_args(argv)
  jax.config.update('jax_platforms', 'cpu')
  try:
    report = compare(args.reference, args.size, args.actions)
  except ImportError as error:
    print(f'reference_parity: error: {error}; the reference needs ninjax, elements, portal, '
          "einops and ruamel.yaml: pip install -e '.[test]'", file=sys.stderr)
    raise SystemExit(2) from None
  except (FileNotFoundError, KeyError, ValueError) as error:
    print(f'reference_parity: error: {error}', file=sys.stderr)
    raise SystemExit(2) from None
  if args.json:
    with open(args.json, 'w') as file:
      json.dump(_nan_safe(report), file, indent=1)
  print('Ours set to the reference\'s values: ' + ', '.join(
      f'{k}={v["value"]}' for k, v in report['aligned_settings'].items()))
  for kind, case in report['cases'].items():
    print(f'{kind} actions: losses (ours / reference / relative error):')
    for name, row in case['losses'].items():
      print(f'  {name:<8} {row["ours"]:12.6g} {row["reference"]:12.6g} {row["max_rel_err"]:9.2e}')
    bad = sorted(((v['max_rel_err'], k) for k, v in case['grads'].items()), reverse=True)[:5]
    print('  largest gradient errors: ' + ', '.join(f'{k} {e:.2e}' for e, k in bad))
  print(f'max relative error: losses {report["max_rel_err_losses"]:.2e}, gradients '
        f'{report["max_rel_err_grads"]:.2e} (entries >= 1e-3 of their tensor\'s largest: '
        f'{report["max_significant_rel_err_grads"]:.2e}; against the tensor\'s scale: '
        f'{report["max_scale_err_grads"]:.2e}), parameters {report["max_rel_err_params"]:.2e}')
  failed = [f'{key} {report[key]:.2e} > {limit:g}' for key, limit in THRESHOLDS.items()
            if not report[key] <= limit]
  if failed:
    print('reference_parity: over the limits: ' + '; '.join(failed), file=sys.stderr)
  raise SystemExit(1 if failed else 0)


if __name__ == '__main__':
  main()

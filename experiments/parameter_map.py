"""The reference DreamerV3's parameters (f8817c4's names) in our layout: one table of rules from
its names to our parameter paths and how each array is laid out in ours, used by
`reference_parity` to give ours the reference's parameters and to compare gradients and updates.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np


# Reference name (regular expression) -> our path ('/'-joined, groups substituted) and how the
# array is laid out in ours (`to_our_layout`: None as it is, 'reshape', 'tokens', 'stoch_first',
# or the continuous actor's 'mean' / 'stddev' half). `{rev}` is the decoder's conv index counted
# from the output, `{out}` its output conv.
PARAMETER_TABLE = [
    (r'enc/cnn(\d+)/(kernel|bias)', r'world_model/encoder/cnn/conv\1/\2', None),
    (r'enc/cnn(\d+)norm/scale', r'world_model/encoder/cnn/norm\1/scale', None),
    (r'enc/mlp(\d+)/(kernel|bias)', r'world_model/encoder/mlp/linear\1/\2', None),
    (r'enc/mlp(\d+)norm/scale', r'world_model/encoder/mlp/norm\1/scale', None),
    (r'dyn/dynin(\d+)/(kernel|bias)', r'world_model/rssm/params/dyn_in_\1/\2', None),
    (r'dyn/dynin(\d+)norm/scale', r'world_model/rssm/params/dyn_in_norm_\1/scale', None),
    (r'dyn/dynhid(\d+)/kernel', r'world_model/rssm/params/cell/hidden\1/kernel', None),
    (r'dyn/dynhid(\d+)/bias', r'world_model/rssm/params/cell/hidden\1/bias', 'reshape'),
    (r'dyn/dynhid(\d+)norm/scale', r'world_model/rssm/params/cell/norm\1/scale', None),
    (r'dyn/dyngru/kernel', r'world_model/rssm/params/cell/gates/kernel', None),
    (r'dyn/dyngru/bias', r'world_model/rssm/params/cell/gates/bias', 'reshape'),
    # The posterior layer reads [deter, tokens]: the reference's tokens are [vector, image]
    # features, ours [image, vector]; the rows are reordered (the same function).
    (r'dyn/obs0/kernel', r'world_model/rssm/params/obs_out/linear0/kernel', 'tokens'),
    (r'dyn/obs(\d+)/(kernel|bias)', r'world_model/rssm/params/obs_out/linear\1/\2', None),
    (r'dyn/obs(\d+)norm/scale', r'world_model/rssm/params/obs_out/norm\1/scale', None),
    (r'dyn/obslogit/(kernel|bias)', r'world_model/rssm/params/obs_out/out/\1', None),
    (r'dyn/prior(\d+)/(kernel|bias)', r'world_model/rssm/params/img_out/linear\1/\2', None),
    (r'dyn/prior(\d+)norm/scale', r'world_model/rssm/params/img_out/norm\1/scale', None),
    (r'dyn/priorlogit/(kernel|bias)', r'world_model/rssm/params/img_out/out/\1', None),
    # The vector decoder reads [stoch, deter] in the reference, [deter, stoch] in ours.
    (r'dec/mlp/linear0/kernel', r'world_model/decoder/mlp/linear0/kernel', 'stoch_first'),
    (r'dec/mlp/linear(\d+)/(kernel|bias)', r'world_model/decoder/mlp/linear\1/\2', None),
    (r'dec/mlp/norm(\d+)/scale', r'world_model/decoder/mlp/norm\1/scale', None),
    (r'dec/vec/vector/pred/(kernel|bias)', r'world_model/decoder/mlp/out/\1', None),
    (r'dec/sp0/kernel', r'world_model/decoder/cnn/space0/kernel', None),
    (r'dec/sp0/bias', r'world_model/decoder/cnn/space0/bias', 'reshape'),
    (r'dec/spnorm/scale', r'world_model/decoder/cnn/linear_norm/scale', None),
    (r'dec/sp(\d+)/(kernel|bias)', r'world_model/decoder/cnn/space\1/\2', None),
    (r'dec/sp(\d+)norm/scale', r'world_model/decoder/cnn/space\1_norm/scale', None),
    (r'dec/conv(\d+)/(kernel|bias)', r'world_model/decoder/cnn/conv{rev}/\2', None),
    (r'dec/conv(\d+)norm/scale', r'world_model/decoder/cnn/norm{rev}/scale', None),
    (r'dec/imgout/(kernel|bias)', r'world_model/decoder/cnn/conv{out}/\1', None),
    (r'rew/mlp/(linear|norm)(\d+)/(kernel|bias|scale)', r'world_model/reward/mlp/\1\2/\3', None),
    (r'rew/head/logits/(kernel|bias)', r'world_model/reward/mlp/out/\1', None),
    (r'con/mlp/(linear|norm)(\d+)/(kernel|bias|scale)', r'world_model/continue/mlp/\1\2/\3',
     None),
    (r'con/head/logit/(kernel|bias)', r'world_model/continue/mlp/out/\1', None),
    (r'pol/mlp/(linear|norm)(\d+)/(kernel|bias|scale)', r'actor/mlp/\1\2/\3', None),
    (r'pol/head/action/logits/(kernel|bias)', r'actor/mlp/out/\1', None),
    (r'pol/head/action/(mean|stddev)/(kernel|bias)', r'actor/mlp/out/\2', r'\1'),
    (r'val/mlp/(linear|norm)(\d+)/(kernel|bias|scale)', r'critic/mlp/\1\2/\3', None),
    (r'val/head/logits/(kernel|bias)', r'critic/mlp/out/\1', None),
]
# The reference's slow critic is our TrainState.slow_critic (same table as val/).
SLOW_PREFIX = ('slowval/', 'val/')
# Reference state that is not a parameter: optimizer state, normaliser state, counters.
NOT_PARAMETERS = r'^(opt/|retnorm/|valnorm/|advnorm/|slowval_count/)'


def name_of(path):
  """'world_model/encoder/...' for a pytree key path."""
  return '/'.join(str(getattr(k, 'key', k)) for k in path)


def flatten(tree):
  return {name_of(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten_like(tree, flat):
  return jax.tree_util.tree_map_with_path(lambda path, _: flat[name_of(path)], tree)


def our_path(name, decoder_convs):
  """(our '/'-joined path, layout, slow) of the reference parameter `name`; `slow` names a
  parameter of the slow critic (its path then inside TrainState.slow_critic)."""
  slow = name.startswith(SLOW_PREFIX[0])
  if slow:
    name = SLOW_PREFIX[1] + name[len(SLOW_PREFIX[0]):]
  for pattern, replacement, layout in PARAMETER_TABLE:
    match = re.fullmatch(pattern, name)
    if match:
      path = match.expand(replacement)
      if '{rev}' in path:
        path = path.replace('{rev}', str(decoder_convs - 1 - int(match.group(1))))
      path = path.replace('{out}', str(decoder_convs))
      layout = match.expand(layout) if layout and '\\' in layout else layout
      return (path[len('critic/'):] if slow else path), layout, slow
  raise KeyError(f'reference parameter {name}: no rule in PARAMETER_TABLE')


def to_our_layout(value, layout, ours_value, dims):
  """The reference's array as the part of our array it is: (index into ours, value).
  dims: {'deter': D, 'vector': V} (V: the vector features in the tokens, 0 without)."""
  value = np.asarray(value)
  if layout == 'tokens':
    deter, vector = dims['deter'], dims['vector']
    return Ellipsis, np.concatenate(
        [value[:deter], value[deter + vector:], value[deter:deter + vector]], 0)
  if layout == 'stoch_first':
    stoch = value.shape[0] - dims['deter']
    return Ellipsis, np.concatenate([value[stoch:], value[:stoch]], 0)
  if layout == 'reshape':   # the same values, ours per block or per output channel
    return Ellipsis, value.reshape(ours_value.shape)
  if layout in ('mean', 'stddev'):   # our continuous actor's output layer holds both halves
    half = ours_value.shape[-1] // 2
    return (Ellipsis, slice(0, half) if layout == 'mean' else slice(half, None)), value
  return Ellipsis, value


def map_parameters(reference, ours, slow_critic, decoder_convs, dims):
  """(params, slow_critic) in our layout holding the reference's values.

  Raises on a reference parameter without a rule, a rule whose target ours lacks, a shape that
  does not match, or a parameter of ours that no reference parameter set.
  """
  flat, flat_slow = flatten(ours), flatten(slow_critic)
  values = {k: np.full(v.shape, np.nan, np.float32) for k, v in flat.items()}
  slow_values = {k: np.full(v.shape, np.nan, np.float32) for k, v in flat_slow.items()}
  for name, value in sorted(reference.items()):
    if re.match(NOT_PARAMETERS, name):
      continue
    path, layout, slow = our_path(name, decoder_convs)
    target = slow_values if slow else values
    if path not in target:
      raise KeyError(f'reference parameter {name} -> {path}: ours has no such parameter')
    index, value = to_our_layout(value, layout, target[path], dims)
    if target[path][index].shape != value.shape:
      raise ValueError(f'{name} {value.shape} -> {path} {target[path][index].shape}: shapes '
                       'differ')
    target[path][index] = value
  unset = sorted(k for k, v in {**values, **{f'slow_critic/{k}': v for k, v in
                                             slow_values.items()}}.items() if np.isnan(v).any())
  if unset:
    raise KeyError(f'our parameters with no reference counterpart: {unset}')
  return (unflatten_like(ours, {k: jnp.asarray(v) for k, v in values.items()}),
          unflatten_like(slow_critic, {k: jnp.asarray(v) for k, v in slow_values.items()}))

"""The reference DreamerV3 (danijar/dreamerv3 at f8817c4), imported from a patched temporary copy
of its checkout, never from this project: its agent for our observation and action spaces, and
the inputs of its train step on one of our batches. Used by `reference_parity`,
`profile_vs_reference` and `reference_side_by_side`.
"""
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np


def patched_copy(directory):
  """A temporary, writable copy of the reference checkout `directory` with the patch beside it
  (`dreamerv3-jit-keywords.patch`: jax.jit shardings as keywords) applied."""
  directory = pathlib.Path(directory).resolve()
  if not (directory / 'dreamerv3' / 'agent.py').exists():
    raise FileNotFoundError(f'{directory}: no dreamerv3/agent.py; pass the reference checkout '
                            '(git clone https://github.com/danijar/dreamerv3 and check out f8817c4)')
  patch = directory.parent / 'dreamerv3-jit-keywords.patch'
  copy = pathlib.Path(tempfile.mkdtemp(prefix='dreamerv3-reference-')) / 'dreamerv3'
  shutil.copytree(directory, copy)
  for path in copy.rglob('*'):
    path.chmod(path.stat().st_mode | 0o200)
  if patch.exists():
    subprocess.run(['patch', '-p1', '-s', '-i', str(patch)], cwd=copy, check=True)
  return copy


def load_reference(directory):
  """Imports the reference's `dreamerv3.agent` from a patched temporary copy of `directory`."""
  copy = patched_copy(directory)
  sys.path.insert(0, str(copy))
  import elements  # pylint: disable=g-import-not-at-top
  import ruamel.yaml  # pylint: disable=g-import-not-at-top
  from dreamerv3 import agent as reference_agent  # pylint: disable=g-import-not-at-top
  presets = ruamel.yaml.YAML(typ='safe').load((copy / 'dreamerv3' / 'configs.yaml').read_text())
  return elements, reference_agent, presets


def build_reference(elements, reference_agent, config, obs_space, act_space, batch, length):
  """The reference agent (its outer embodied.jax.Agent) for our spaces."""
  e_obs = {k: elements.Space(v.dtype, v.shape) for k, v in obs_space.items()}
  if act_space.discrete:
    e_act = {'action': elements.Space(np.int32, (), 0, act_space.n)}
  else:
    e_act = {'action': elements.Space(np.float32, act_space.shape, -1.0, 1.0)}
  agent = reference_agent.Agent(e_obs, e_act, elements.Config(
      # No precompile: the callers trace the pieces they compare or time themselves.
      **config.agent, logdir=config.logdir, seed=0,
      jax=elements.Config({**config.jax, 'precompile': False}), batch_size=batch,
      batch_length=length, replay_context=0, report_length=length, replica=0, replicas=1))
  # Its set-up forbids implicit transfers; the callers move their batches themselves.
  jax.config.update('jax_transfer_guard', 'allow')
  return agent


def reference_train_inputs(outer, batch):
  """(state, carry, data) for the reference's `train` on our batch [B, T]: its parameters as
  arrays, its initial train carry, and the batch with the step ids and counters its replay
  adds."""
  import ninjax as nj  # pylint: disable=g-import-not-at-top
  state = {k: jnp.asarray(v) for k, v in outer.params.items()}
  data = {k: jnp.asarray(v) for k, v in batch.items()}
  size, length = data['is_first'].shape
  data['stepid'] = jnp.zeros((size, length, 20), jnp.uint8)
  data['consec'] = jnp.zeros((size, length), jnp.int32)
  _, carry = nj.pure(outer.model.init_train)(state, size)
  return state, carry, data

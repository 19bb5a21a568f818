"""Checkpointer: round trip, keep-K, corrupt checkpoints, half-written saves."""
import logging
import os
import shutil

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.run.checkpoint import Checkpointer, resolve


@flax.struct.dataclass
class _State:
  params: dict
  opt_state: object
  rng: jax.Array
  step: jax.Array


def _state(seed):
  params = {'w': jnp.arange(6.0).reshape(2, 3) + seed, 'b': jnp.zeros(3, jnp.bfloat16)}
  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)
  _, opt_state = None, optimizer.update(params, opt_state, params)[1]
  return _State(params, opt_state, jax.random.PRNGKey(seed), jnp.array(seed, jnp.int32))


def _assert_tree_equal(a, b):
  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32))


def test_round_trip_and_keep(tmp_path):
  checkpointer = Checkpointer(tmp_path / 'ckpt', keep=2)
  assert checkpointer.latest_step() is None
  for step in (10, 20, 30):
    checkpointer.save(step, _state(step), {'agent_steps': step, 'replay': {'steps': np.int64(7)}})
  assert checkpointer.steps() == [20, 30]
  state, meta = checkpointer.restore(_state(0))
  _assert_tree_equal(state, _state(30))
  assert meta['agent_steps'] == 30 and meta['replay'] == {'steps': 7} and meta['step'] == 30
  state, meta = checkpointer.restore(_state(0), step=20)
  _assert_tree_equal(state, _state(20))
  assert resolve(tmp_path / 'ckpt' / '20') == (str(tmp_path / 'ckpt'), 20)
  checkpointer.close()


# A bad checkpoint's fallback leaves a clean log: no 'Event loop is closed' from orbax's reads.
@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')
def test_corrupt_falls_back_and_half_written_ignored(tmp_path, caplog):
  directory = tmp_path / 'ckpt'
  checkpointer = Checkpointer(directory, keep=3)
  checkpointer.save(1, _state(1), {})
  checkpointer.save(2, _state(2), {})
  checkpointer.close()
  # A half-written save (killed before orbax's rename) is not a checkpoint.
  shutil.copytree(directory / '2', directory / '3.orbax-checkpoint-tmp-123')
  # The newest complete checkpoint is damaged: its array data is gone.
  for root, _, files in os.walk(directory / '2' / 'state'):
    for name in files:
      if not name.endswith('.json') and 'METADATA' not in name:
        open(os.path.join(root, name), 'wb').close()
  shutil.rmtree(directory / '2' / 'state' / 'ocdbt.process_0', ignore_errors=True)
  checkpointer = Checkpointer(directory, keep=3)
  assert checkpointer.latest_step() == 2
  with caplog.at_level(logging.WARNING):
    state, _ = checkpointer.restore(_state(0))
  _assert_tree_equal(state, _state(1))
  assert str(directory / '2') in caplog.text
  with pytest.raises(ValueError, match=str(directory / '2')):
    checkpointer.restore(_state(0), step=2)
  # A structure that does not match the saved one: a clear error.
  with pytest.raises(ValueError, match='unreadable or does not match'):
    checkpointer.restore({'other': jnp.zeros(2)}, step=1)
  with pytest.raises(FileNotFoundError, match='step 5'):
    checkpointer.restore(_state(0), step=5)
  checkpointer.close()


def test_restored_state_reuses_the_compiled_step(tmp_path):
  # orbax returns committed arrays; a jitted step that saw uncommitted ones would compile again.
  step = jax.jit(lambda state: jax.tree.map(lambda x: x + 1, state))
  state = step({'w': jnp.zeros((3,), jnp.float32), 'n': jnp.zeros((), jnp.int32)})
  checkpointer = Checkpointer(str(tmp_path), keep=2)
  checkpointer.save(1, state, {})
  restored, _ = checkpointer.restore(state)
  np.testing.assert_array_equal(restored['w'], np.ones(3))
  step(restored)
  assert step._cache_size() == 1

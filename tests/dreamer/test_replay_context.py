"""DreamerV3's replay context: windows start from the latent stored in replay for their
first step (V3 code `agent._apply_replay_context`), and training writes its latents back."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from common.envs.spaces import Space
from common.nn import rssm as rssm_lib
from dreamer import world_model as wm_lib
from tests.dreamer.test_agent import B, T, K, debug_config, spaces, synthetic_batch

FAST = {'xla_backend_optimization_level': 0}


@functools.lru_cache(None)
def _model():
  config = debug_config().agent
  wm = wm_lib.make(config, spaces(), Space(np.int32, (), 0, 3))
  init = jax.jit(lambda key: wm_lib.init_params(wm, key), compiler_options=FAST)
  return wm, init(jax.random.PRNGKey(0))


def test_entries_round_trip_bfloat16_deter_and_one_hot_stoch():
  wm, _ = _model()
  rng = np.random.default_rng(0)
  deter = rng.normal(size=(3, 64)).astype(np.float32)
  stoch = jax.nn.one_hot(rng.integers(0, 4, (3, 4)), 4)
  latent = rssm_lib.RSSMState(jnp.asarray(deter), stoch, {'logits': jnp.zeros_like(stoch)})
  entries = wm_lib.context_entries(wm, latent)
  assert entries['context/deter'].dtype == jnp.uint16   # 2 bytes per unit
  assert entries['context/stoch'].dtype == jnp.uint8    # 1 byte per variable
  back = wm_lib.context_latent(wm, entries)
  np.testing.assert_array_equal(back.stoch, stoch)
  np.testing.assert_array_equal(back.deter, deter.astype(jnp.bfloat16).astype(np.float32))
  np.testing.assert_allclose(back.deter, deter, rtol=2 ** -8)


def test_window_starts_from_the_stored_latent_and_real_previous_action():
  """The first trained step (K) is the posterior step from the latent stored for step K - 1
  with action[K - 1]; without a context it would start from the initial state."""
  wm, params = _model()
  batch = synthetic_batch(0)
  batch['is_first'][:] = False   # mid-episode windows
  key = jax.random.PRNGKey(5)
  observe = jax.jit(lambda b: wm_lib.observe(wm, params, b, key), compiler_options=FAST)
  post, _, _, embed, rest = observe(batch)
  assert post.deter.shape == (B, T - K, 64) and rest['reward'].shape == (B, T - K)
  np.testing.assert_array_equal(rest['reward'], batch['reward'][:, K:])
  start = wm_lib.context_latent(wm, {k: batch[k][:, K - 1] for k in wm_lib.CONTEXT_KEYS})
  action = jax.nn.one_hot(batch['action'][:, K - 1], 4)
  expected, _ = wm.rssm.apply(params['rssm'], start, action, embed[:, 0],
                              jnp.zeros(B, bool), jax.random.split(key, T - K)[0],
                              method=rssm_lib.RSSM.obs_step)
  np.testing.assert_allclose(post.deter[:, 0], expected.deter, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(post.stoch[:, 0], expected.stoch)
  # Another stored latent changes the window's first state: the context is really used.
  other = dict(batch, **{'context/stoch': (batch['context/stoch'] + 1) % 4})
  moved, _, _, _, _ = observe(other)
  assert not np.allclose(moved.deter[:, 0], post.deter[:, 0])
  # Where the first trained step starts an episode, the stored latent is ignored.
  batch['is_first'][:, K] = True
  other['is_first'] = batch['is_first']
  first, _, _, _, _ = observe(batch)
  reset, _, _, _, _ = observe(other)
  np.testing.assert_allclose(first.deter[:, 0], reset.deter[:, 0], rtol=1e-6)


def test_replay_memory_counts_two_bytes_per_deter_unit_and_one_per_variable():
  from experiments import replay_memory  # pylint: disable=g-import-not-at-top
  full, parts = replay_memory.bytes_per_step('size1m', 'atari', context=True, chunk=8)
  plain, _ = replay_memory.bytes_per_step('size1m', 'atari', context=False, chunk=8)
  assert parts['context/deter'] == 2 * 512 and parts['context/stoch'] == 32
  assert full - plain == 2 * 512 + 32 and parts['image'] == 96 * 96

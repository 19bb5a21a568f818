"""common/run/memory.py: the pre-compile peak-memory estimate, against hand counts and XLA's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.run import memory


def test_chain_frees_each_value_after_its_last_use():
  # x -> y -> z, 4 KB each: at most two are alive at once (x donated).
  def chain(x):
    y = jnp.sin(x)
    return jnp.cos(y)
  x = jax.ShapeDtypeStruct((1000,), np.float32)
  assert memory.peak_bytes(chain, x) == 2 * 4000


def test_value_used_late_stays_alive():
  # y is read again at the end, so it overlaps z and w (y, z, w while exp runs; z freed,
  # then y, w and the sum): three values where the chain above needs two.
  def late(x):
    y = jnp.sin(x)
    z = jnp.cos(y)
    w = jnp.exp(z)
    return w + y
  x = jax.ShapeDtypeStruct((1000,), np.float32)
  assert memory.peak_bytes(late, x) == 3 * 4000


def test_scan_counts_stacked_outputs_and_body_temporaries():
  def loop(x):
    def body(carry, _):
      hidden = jnp.tanh(carry @ jnp.ones((64, 64), jnp.float32))
      return hidden, hidden
    return jax.lax.scan(body, x, None, length=10)[1]
  x = jax.ShapeDtypeStruct((8, 64), np.float32)
  stacked = 10 * 8 * 64 * 4
  estimate = memory.peak_bytes(loop, x)
  assert stacked < estimate < stacked + 64 * 64 * 4 + 4 * 8 * 64 * 4 + 8 * 64 * 4 + 1


def _xla_bytes(fn, *args):
  analysis = jax.jit(fn, donate_argnums=0).lower(*args).compile().memory_analysis()
  return (analysis.temp_size_in_bytes + analysis.argument_size_in_bytes
          + analysis.output_size_in_bytes - analysis.alias_size_in_bytes)


def test_dreamer_train_step_estimate_is_close_to_xla():
  # The unfused estimate should not undercount XLA's buffers much, nor overcount wildly.
  from common.envs.spaces import Space  # pylint: disable=g-import-not-at-top
  from common.run import config as config_lib  # pylint: disable=g-import-not-at-top
  from dreamer import agent as agent_lib  # pylint: disable=g-import-not-at-top
  from dreamer import configs  # pylint: disable=g-import-not-at-top
  config = config_lib.parse(['--env', 'crafter_reward', '--size', 'debug', '--logdir', '/tmp/m'],
                            configs.PRESETS)
  obs = {'image': Space(np.uint8, (64, 64, 3)), 'reward': Space(np.float32, ()),
         'is_first': Space(bool, ()), 'is_last': Space(bool, ()), 'is_terminal': Space(bool, ())}
  act = Space(np.int32, (), 0, 16)
  agent = agent_lib.make_agent(config, obs, act)
  length = config.run.batch_length + agent.replay_context
  estimate = memory.train_step_bytes(agent, obs, act, config.run.batch_size, length)
  state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
  batch = memory.train_batch_spec(agent, obs, act, config.run.batch_size, length)
  assert set(batch) >= {'image', 'action', 'context/deter', 'context/stoch'}
  xla = _xla_bytes(agent.train, state, batch)
  assert 0.8 * xla <= estimate <= 2.0 * xla, (estimate, xla)


@pytest.mark.parametrize('stats, expected', [
    ({'bytes_limit': 80 * 2 ** 30}, 80 * 2 ** 30), (None, None)])
def test_device_bytes(stats, expected):
  class Device:
    def memory_stats(self):
      return stats
  got = memory.device_bytes(Device())
  if expected is None:  # a CPU reports no limit: physical RAM
    import os  # pylint: disable=g-import-not-at-top
    expected = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  assert got == expected

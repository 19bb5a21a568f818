"""experiments/profile_vs_reference.py: the trace's self times, the HLO's loops and the
attribution of a traced step to places, kinds and modules."""
import jax
import jax.numpy as jnp
import pytest

from experiments import profile_vs_reference as profile


def test_self_times_subtract_nested_events_per_thread():
  events = [dict(name='loop', tid=1, ts=0, dur=10), dict(name='dot', tid=1, ts=2, dur=3),
            dict(name='add', tid=1, ts=5, dur=3), dict(name='copy', tid=2, ts=0, dur=4),
            dict(name='dot', tid=1, ts=12, dur=1)]
  assert sorted(profile.self_times(events)) == sorted(
      [('loop', 4), ('dot', 3), ('add', 3), ('copy', 4), ('dot', 1)])


@pytest.mark.parametrize('op_name, module', [
    ('jit(<lambda>)/opt/jvp(dyn)/scan/while/body/eval_jaxpr/dyn/dyn/dynhid0/dot_general', 'rssm'),
    ('jit(train)/jvp()/while/body/eval_jaxpr/RSSM.img_step/RSSM._core/cell/add', 'rssm'),
    ('jit(<lambda>)/opt/transpose(jvp(enc))/enc/cnn0/conv_general_dilated', 'encoder'),
    ('jit(train)/transpose(jvp(Decoder))/cnn/conv3/dot_general', 'decoder'),
    ('jit(<lambda>)/opt/jvp(slowval)/head/head/reduce_sum', 'heads'),
    ('jit(train)/jvp(Head)/mlp/linear0/dot_general', 'heads'),
    ('jit(<lambda>)/opt/sqrt', 'optimizer'),
    ('jit(train)/jvp()/reduce_sum', 'other'),
])
def test_module_of_reads_both_name_stacks(op_name, module):
  assert profile.module_of(op_name) == module


def test_breakdown_places_a_scan_forward_and_backward():
  def loss(x, w):
    def body(carry, _):
      return jnp.tanh(carry @ w), None
    carry, _ = jax.lax.scan(body, x, None, length=7)
    return jnp.sum(carry ** 2)

  x, w = jnp.ones((8, 64)), jnp.eye(64) * 0.5
  compiled = jax.jit(jax.grad(loss, argnums=1)).lower(x, w).compile()
  instructions = profile.parse_hlo(compiled.as_text())
  assert sorted(info['trips'] for info in instructions.values()
                if info['opcode'] == 'while') == [7, 7]
  report = profile.breakdown(compiled, lambda: compiled(x, w), str(profile.tempfile.mkdtemp()),
                             length=7)
  assert {'loop x7 (observe), forward', 'loop x7 (observe), backward'} <= set(report['place_ms'])
  assert report['kind_ms']['matmul'] > 0
  # 7 steps forward and 7 backward, each at least one matmul thunk.
  assert report['thunks'] >= 14
  assert report['thunk_ms'] > 0

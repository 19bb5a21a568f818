"""Who reads whom in the space-time transformer (dreamer4/transformer.py): the masks against NumPy
loops, the layers' dependency pattern, and the causal, episode and agent-token isolation of the
dynamics model and tokenizer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer4 import dynamics, tokenizer, transformer

ENCODER_ROLES = [tokenizer.PATCH] * 3 + [tokenizer.LATENT] * 2
DYNAMICS_ROLES = dynamics.roles(spatial=2, registers=1)
ROLE_SETS = {
    'encoder': (ENCODER_ROLES, tokenizer.ENCODER_READS),
    'decoder': (ENCODER_ROLES, tokenizer.DECODER_READS),
    'dynamics': (DYNAMICS_ROLES, dynamics.READS),
}


def _space_loop(roles, reads):
  out = np.zeros((len(roles), len(roles)), bool)
  for i, query in enumerate(roles):
    for j, key in enumerate(roles):
      out[i, j] = key in reads[query]
  return out


def test_time_mask_matches_a_loop_with_episode_changes():
  """time_mask: query t reads key u iff u <= t and both frames are in the same episode."""
  episode = np.array([[0, 0, 1, 1, 1, 2], [5, 5, 5, 5, 5, 5], [0, 1, 1, 2, 2, 2]])
  got = np.asarray(transformer.time_mask(jnp.asarray(episode)))
  want = np.zeros((3, 6, 6), bool)
  for b in range(3):
    for t in range(6):
      for u in range(6):
        want[b, t, u] = u <= t and episode[b, u] == episode[b, t]
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('name', sorted(ROLE_SETS))
def test_space_mask_matches_a_loop(name):
  """space_mask: query i reads key j iff role j is in the reads of role i."""
  roles, reads = ROLE_SETS[name]
  np.testing.assert_array_equal(transformer.space_mask(roles, reads), _space_loop(roles, reads))


def test_space_masks_state_the_papers_rules():
  """Encoder: latents read all, patches only patches; decoder: patches read all, latents only
  latents; dynamics: the agent token reads all and only the agent token reads it."""
  patch, latent = tokenizer.PATCH, tokenizer.LATENT
  encoder = transformer.space_mask(ENCODER_ROLES, tokenizer.ENCODER_READS)
  decoder = transformer.space_mask(ENCODER_ROLES, tokenizer.DECODER_READS)
  for i, qi in enumerate(ENCODER_ROLES):
    for j, kj in enumerate(ENCODER_ROLES):
      assert encoder[i, j] == (qi == latent or kj == patch)
      assert decoder[i, j] == (qi == patch or kj == latent)
  space = transformer.space_mask(DYNAMICS_ROLES, dynamics.READS)
  agent = DYNAMICS_ROLES.index(dynamics.AGENT)
  assert DYNAMICS_ROLES.count(dynamics.AGENT) == 1
  assert space[agent].all()
  others = [i for i in range(len(DYNAMICS_ROLES)) if i != agent]
  assert not space[others, agent].any()
  assert space[np.ix_(others, others)].all()


@pytest.mark.parametrize('name', sorted(ROLE_SETS))
def test_block_causal_mask_matches_a_loop(name):
  """block_causal_mask: query (t, i) reads key (u, j) iff u <= t and role i reads role j."""
  roles, reads = ROLE_SETS[name]
  frames, s = 3, len(roles)
  got = transformer.block_causal_mask(roles, reads, frames)
  want = np.zeros((frames * s, frames * s), bool)
  for t in range(frames):
    for i in range(s):
      for u in range(frames):
        for j in range(s):
          want[t * s + i, u * s + j] = u <= t and roles[j] in reads[roles[i]]
  np.testing.assert_array_equal(got, want)


@pytest.fixture(scope='module')
def dependence():
  """(space mask) -> [T*S, T*S]: does output (t, i) of 4 space/time layers read input (u, j)."""
  frames, s, width = 3, len(ENCODER_ROLES), 8
  net = transformer.SpaceTimeTransformer(layers=4, heads=2, kv_heads=1, temporal_every=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, frames, s, width))
  space = transformer.space_mask(ENCODER_ROLES, tokenizer.ENCODER_READS)
  params = jax.jit(net.init)(jax.random.PRNGKey(1), x, space)
  jacobian = jax.jit(jax.jacrev(lambda v, m: net.apply(params, v, m)))   # [1,T,S,D,1,T,S,D]

  def depends(mask):
    jac = np.abs(np.asarray(jacobian(x, jnp.asarray(mask))))
    return jac.sum((0, 3, 4, 7)).reshape(frames * s, frames * s) > 0
  return depends


@pytest.mark.parametrize('name', ['encoder', 'decoder'])
def test_layers_compose_to_the_block_causal_mask(dependence, name):
  """Output (t, i) of space/time layers depends on input (u, j) exactly where the mask allows."""
  roles, reads = ROLE_SETS[name]
  np.testing.assert_array_equal(dependence(transformer.space_mask(roles, reads)),
                                transformer.block_causal_mask(roles, reads, 3))


# A tiny dynamics model, built and initialised once.
B, T, S_Z, C_Z, ACTIONS, K = 1, 5, 2, 3, 3, 4


@pytest.fixture(scope='module')
def dyn():
  model = dynamics.Dynamics(actions=ACTIONS, spatial=S_Z, registers=1, k_max=K, width=16,
                            layers=2, heads=2, kv_heads=1, temporal_every=2)
  rng = np.random.default_rng(0)
  inputs = dict(
      z=jnp.asarray(rng.normal(size=(B, T, S_Z, C_Z)), jnp.float32),
      tau=jnp.asarray(rng.integers(0, K, (B, T)) / K, jnp.float32),
      d=jnp.full((B, T), 1 / K, jnp.float32),
      action=jnp.asarray(rng.integers(0, ACTIONS, (B, T)), jnp.int32),
      has_action=jnp.ones((B, T), bool),
      episode=jnp.zeros((B, T), jnp.int32))
  params = jax.jit(model.init)(jax.random.PRNGKey(0), *inputs.values())['params']
  # The output layer starts at zero; random weights let every input show in the prediction.
  kernel = params['latent_out']['kernel']
  params['latent_out']['kernel'] = jnp.asarray(rng.normal(size=kernel.shape), jnp.float32)
  apply = jax.jit(lambda p, kw: model.apply({'params': p}, **kw))
  return params, inputs, apply


def _changed_frames(a, b):
  """Which frames (axis 1) of two [1, T, ...] outputs differ by more than 1e-6."""
  diff = np.abs(np.asarray(a) - np.asarray(b)).reshape(a.shape[0], a.shape[1], -1).max((0, 2))
  return diff > 1e-6


def test_dynamics_is_causal_in_time(dyn):
  """Changing frame 3's latents of 5 leaves the prediction and h of frames 0..2 unchanged."""
  params, inputs, apply = dyn
  pred, h = apply(params, inputs)
  changed = dict(inputs, z=inputs['z'].at[:, 3].add(1.0))
  pred2, h2 = apply(params, changed)
  assert pred.shape == (B, T, S_Z, C_Z) and h.shape == (B, T, 16)
  np.testing.assert_allclose(pred2[:, :3], pred[:, :3], atol=1e-6)
  np.testing.assert_allclose(h2[:, :3], h[:, :3], atol=1e-6)
  assert _changed_frames(pred, pred2)[3] and _changed_frames(h, h2)[3]


def test_dynamics_does_not_read_across_an_episode_start(dyn):
  """With episodes [0, 0, 1, 1, 1], changing frame 1 changes frame 1 only, not frames 2..4."""
  params, inputs, apply = dyn
  inputs = dict(inputs, episode=jnp.asarray([[0, 0, 1, 1, 1]], jnp.int32))
  pred, h = apply(params, inputs)
  pred2, h2 = apply(params, dict(inputs, z=inputs['z'].at[:, 1].add(1.0)))
  np.testing.assert_array_equal(_changed_frames(pred, pred2), [False, True, False, False, False])
  np.testing.assert_array_equal(_changed_frames(h, h2), [False, True, False, False, False])
  same = dict(inputs, episode=jnp.zeros((B, T), jnp.int32))     # control: one episode
  pred3, _ = apply(params, same)
  pred4, _ = apply(params, dict(same, z=same['z'].at[:, 1].add(1.0)))
  assert _changed_frames(pred3, pred4)[2:].all()


def test_agent_token_is_not_read_by_the_world_model(dyn):
  """Perturbing the agent token's parameter changes h but no frame's latent prediction."""
  params, inputs, apply = dyn
  pred, h = apply(params, inputs)
  moved = dict(params, agent_token=params['agent_token'] + 1.0)
  pred2, h2 = apply(moved, inputs)
  np.testing.assert_allclose(pred2, pred, atol=1e-6)
  assert _changed_frames(h, h2).all()
  control = dict(params, registers=params['registers'] + 1.0)   # registers are read
  assert _changed_frames(pred, apply(control, inputs)[0]).all()


@pytest.fixture(scope='module')
def tok():
  model = tokenizer.Tokenizer(frame_shape=(10, 10, 4), patch=2, latents=4, bottleneck=3,
                              width=16, layers=2, heads=2, kv_heads=1, temporal_every=2)
  frames = jax.random.uniform(jax.random.PRNGKey(0), (1, 4, 10, 10, 4))
  params = jax.jit(model.init)(jax.random.PRNGKey(1), frames)
  encode = jax.jit(lambda f: model.apply(params, f, method=model.encode))
  return frames, encode


def test_tokenizer_encodes_causally_in_time(tok):
  """Changing frame 2 of 4 leaves z of frames 0..1 unchanged and changes z of frame 2."""
  frames, encode = tok
  z = encode(frames)
  assert z.shape == (1, 4, 4, 3)
  z2 = encode(frames.at[:, 2].set(1.0 - frames[:, 2]))
  np.testing.assert_allclose(z2[:, :2], z[:, :2], atol=1e-6)
  assert _changed_frames(z, z2)[2]


def test_tokenizer_latents_read_the_patches(tok):
  """Changing one 2x2 patch of frame 0 changes z of frame 0 (the latents read the patches)."""
  frames, encode = tok
  z = encode(frames)
  z2 = encode(frames.at[:, 0, :2, :2].add(1.0))
  assert _changed_frames(z, z2)[0]

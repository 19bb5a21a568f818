"""V, M, C and CMA-ES of World Models against NumPy references."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.run import config as config_lib
from world_models_ha import controller, dream, evolve, mdnrnn, vae


def _numpy_mixture_nll(logmix, mean, logstd, target):
  """Plain loop: -log sum_k softmax(logmix)_k N(y; mean_k, exp(logstd_k))."""
  out = np.zeros(target.shape)
  for index in np.ndindex(target.shape):
    weights = np.exp(logmix[index]) / np.exp(logmix[index]).sum()
    std = np.exp(logstd[index])
    density = sum(w * np.exp(-0.5 * ((target[index] - m) / s) ** 2) / (s * np.sqrt(2 * np.pi))
                  for w, m, s in zip(weights, mean[index], std))
    out[index] = -np.log(density)
  return out


def test_mixture_nll_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 5))
  logmix = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  mean, logstd = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5)) * 0.5
  target = rng.normal(size=(3, 4))
  got = mdnrnn.mixture_nll(*map(jnp.asarray, (logmix, mean, logstd, target)))
  np.testing.assert_allclose(got, _numpy_mixture_nll(logmix, mean, logstd, target), rtol=1e-5)


def test_mdnrnn_loss_matches_numpy_and_unroll_matches_steps():
  model = mdnrnn.MDNRNN(z_size=3, hidden=8, mixtures=5, predict_done=True)
  params = mdnrnn.init_params(model, jax.random.PRNGKey(0), action_dim=2)
  rng = np.random.default_rng(1)
  batch = {'mean': rng.normal(size=(2, 5, 3)).astype(np.float32),
           'logvar': np.full((2, 5, 3), -40.0, np.float32),  # z = mean exactly
           'action': rng.normal(size=(2, 4, 2)).astype(np.float32),
           'done': np.array([[0, 0, 0, 1], [0, 0, 0, 0]], bool),
           'mask': np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)}
  loss, (metrics, _) = mdnrnn.loss_fn(model, params, batch, jax.random.PRNGKey(2),
                                      done_weight=10.0)
  # Step-by-step outputs, then the loss in NumPy.
  carry = mdnrnn.initial_carry(model, 2)
  nll, bce = np.zeros((2, 4)), np.zeros((2, 4))
  for t in range(4):
    carry, out = mdnrnn.step(model, params, carry, jnp.asarray(batch['mean'][:, t]),
                             jnp.asarray(batch['action'][:, t]))
    nll[:, t] = _numpy_mixture_nll(*(np.asarray(x, np.float64) for x in out[:3]),
                                   batch['mean'][:, t + 1]).mean(-1)
    p = 1 / (1 + np.exp(-np.asarray(out.done_logit, np.float64)))
    y = batch['done'][:, t]
    bce[:, t] = -(y * np.log(p) + (1 - y) * np.log(1 - p)) * (1 + 9 * y)
  mask = batch['mask']
  expected_z = (nll * mask).sum() / mask.sum()
  expected_done = (bce * mask).sum() / mask.sum()
  np.testing.assert_allclose(metrics['mdnrnn/z_loss'], expected_z, rtol=1e-4)
  np.testing.assert_allclose(metrics['mdnrnn/done_loss'], expected_done, rtol=1e-4)
  np.testing.assert_allclose(loss, expected_z + expected_done, rtol=1e-4)


def test_mdn_sample_temperature():
  # Two components: weights 0.9 / 0.1 at means -5 / +5 with tiny std.
  logmix = jnp.log(jnp.array([[[0.9, 0.1]]]))
  out = mdnrnn.MDNOutput(jnp.broadcast_to(logmix, (4000, 1, 2)),
                         jnp.broadcast_to(jnp.array([-5.0, 5.0]), (4000, 1, 2)),
                         jnp.full((4000, 1, 2), -6.0), jnp.zeros((4000,)))
  for tau, expected in ((1.0, 0.1), (3.0, 1 / (1 + 9 ** (1 / 3)))):
    z = mdnrnn.sample(out, jax.random.PRNGKey(0), tau)
    assert abs(float((z > 0).mean()) - expected) < 0.03
  assert float(jnp.abs(jnp.abs(z) - 5.0).max()) < 0.1


def test_controller_matches_reference_squashing():
  rng = np.random.default_rng(0)
  params = {'weight': rng.normal(size=(6, 3)).astype(np.float32),
            'bias': rng.normal(size=3).astype(np.float32)}
  x = rng.normal(size=(4, 6)).astype(np.float32)
  raw = np.tanh(x @ params['weight'] + params['bias'])
  expected = np.stack([raw[:, 0], (raw[:, 1] + 1) / 2, np.clip(raw[:, 2], 0, 1)], -1)
  np.testing.assert_allclose(controller.act(params, x, 'car_racing'), expected, rtol=1e-5)
  doom = {'weight': params['weight'][:, :1]}   # the reference's Doom controller has no bias
  raw = np.tanh(x @ doom['weight'])
  expected = np.where(raw > 1 / 3, 1.0, np.where(raw < -1 / 3, -1.0, 0.0))
  np.testing.assert_array_equal(controller.act(doom, x, 'doom'), expected)
  assert controller.input_size(32, 256, False) * 3 + 3 == 867  # the paper's CarRacing C
  doom_params = controller.init_params(controller.input_size(64, 512, True), 1, bias=False)
  assert sum(v.size for v in doom_params.values()) == 1088   # reference doomrnn/model.py
  with pytest.raises(ValueError, match='kind'):
    controller.act(params, x, 'pong')


def test_vae_reconstructs_better_than_mean_image():
  # Eight frames: two random colours, split left/right or right/left.
  colors = np.random.default_rng(0).integers(0, 256, size=(8, 2, 3))
  images = np.zeros((8, 64, 64, 3), np.uint8)
  for i in range(8):
    images[i] = colors[i, 0]
    images[i, :, 32 * (i % 2):32 * (i % 2) + 32] = colors[i, 1]
  model = vae.VAE(z_size=8)
  params = vae.init_params(model, jax.random.PRNGKey(0))
  optimizer = optax.adam(3e-3)
  opt_state = optimizer.init(params)

  @jax.jit
  def train(params, opt_state, key):
    grads, metrics = jax.grad(lambda p: vae.loss_fn(model, p, images, key, 0.5),
                              has_aux=True)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, metrics

  for step in range(40):
    params, opt_state, metrics = train(params, opt_state, jax.random.PRNGKey(step))
  assert np.isfinite(float(metrics['vae/loss']))
  target = images / 255.0
  mean, logvar = vae.encode(model, params, jnp.asarray(images))
  assert mean.shape == (8, 8) and logvar.shape == (8, 8)
  recon = np.asarray(vae.decode(model, params, mean))
  vae_error = np.square(recon - target).sum((1, 2, 3)).mean()
  mean_error = np.square(target.mean(0, keepdims=True) - target).sum((1, 2, 3)).mean()
  assert vae_error < 0.8 * mean_error, (vae_error, mean_error)


def test_cmaes_solves_sphere():
  es = evolve.CMAES({'x': jnp.full((10,), 3.0)}, population=64, sigma=0.1, weight_decay=0.0)
  key = jax.random.PRNGKey(0)
  state = es.init(key)
  for _ in range(70):
    key, ask_key, tell_key = jax.random.split(key, 3)
    candidates, state = es.ask(ask_key, state)
    state, _ = es.tell(tell_key, state, candidates, -jnp.sum(candidates['x'] ** 2, -1))
  assert float(jnp.sum(es.mean(state)['x'] ** 2)) < 1e-3
  with pytest.raises(ValueError, match='population'):
    evolve.CMAES({'x': jnp.zeros(3)}, population=1)


def test_dream_ends_where_the_model_says():
  model = mdnrnn.MDNRNN(z_size=4, hidden=8, predict_done=True)
  params = mdnrnn.init_params(model, jax.random.PRNGKey(0), action_dim=1)
  candidates = jax.tree.map(lambda x: jnp.zeros((3,) + x.shape),
                            controller.init_params(4 + 16, 1))
  initial = jnp.zeros((5, 4))
  run = jax.jit(lambda params, key: dream.evaluate_population(
      model, params, candidates, initial, initial, key, rollouts=2, kind='doom', use_cell=True,
      temperature=1.15, max_steps=7))
  for bias, length in ((-20.0, 7.0), (20.0, 1.0)):
    params = jax.tree.map(lambda x: x, params)
    params['params']['mdn']['bias'] = params['params']['mdn']['bias'].at[-1].set(bias)
    params['params']['mdn']['kernel'] = params['params']['mdn']['kernel'].at[:, -1].set(0.0)
    mean, returns = run(params, jax.random.PRNGKey(1))
    assert returns.shape == (3, 2)
    np.testing.assert_array_equal(mean, np.full(3, length))


def test_dream_with_fixed_actions_matches_a_controller_that_takes_them():
  """dream.rollout's `actions` replace the controller step for step (the diagnostics' policies)."""
  model = mdnrnn.MDNRNN(z_size=4, hidden=8, predict_done=True)
  params = mdnrnn.init_params(model, jax.random.PRNGKey(0), action_dim=1)
  # A sharp done head: its sign follows h, which follows the actions fed in.
  params['params']['mdn']['kernel'] = params['params']['mdn']['kernel'].at[:, -1].multiply(50.0)
  params['params']['mdn']['bias'] = params['params']['mdn']['bias'].at[-1].set(0.0)
  stay = jax.tree.map(lambda x: jnp.zeros((6,) + x.shape), controller.init_params(4 + 16, 1))
  initial = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
  run = functools.partial(dream.rollout, model, params, stay, initial, jax.random.PRNGKey(2),
                          kind='doom', use_cell=True, temperature=1.0, max_steps=30)
  _, by_controller = run()
  _, by_actions = run(actions=jnp.zeros((6, 30, 1)))
  np.testing.assert_array_equal(by_controller, by_actions)   # same actions, same key
  lengths = {}
  for value in (-1.0, 1.0):
    _, lengths[value] = run(actions=jnp.full((6, 30, 1), value))
  assert not np.array_equal(lengths[-1.0], lengths[1.0])   # the actions are used


def test_mdnrnn_training_as_the_reference():
  """M as the reference trains it: forget-gate bias 1 (LayerNormBasicLSTMCell forget_bias),
  each gradient element clipped to +-1 (tf.clip_by_value), Doom's lr decayed 0.99999 per step."""
  from world_models_ha import configs, vm_stages  # pylint: disable=g-import-not-at-top
  model = mdnrnn.MDNRNN(z_size=4, hidden=8)
  params = mdnrnn.init_params(model, jax.random.PRNGKey(0), action_dim=1)
  np.testing.assert_array_equal(params['params']['lstm']['hf']['bias'], 1.0)
  for name in ('hi', 'hg', 'ho'):
    np.testing.assert_array_equal(params['params']['lstm'][name]['bias'], 0.0)
  cfg = configs.MDNRNNConfig(lr=1e-2, min_lr=1e-5, lr_decay=0.5)
  optimizer = vm_stages.rnn_optimizer(cfg)
  weights = {'w': jnp.zeros(3)}
  grads = [{'w': jnp.array([5.0, -0.5, -3.0])}, {'w': jnp.array([-0.2, 2.0, 0.1])}]
  clipped = [{'w': jnp.clip(g['w'], -1.0, 1.0)} for g in grads]
  state, reference = optimizer.init(weights), optax.adam(
      lambda step: (1e-2 - 1e-5) * 0.5 ** step + 1e-5)
  reference_state = reference.init(weights)
  for grad, clip in zip(grads, clipped):
    update, state = optimizer.update(grad, state)
    want, reference_state = reference.update(clip, reference_state)
    np.testing.assert_allclose(update['w'], want['w'], rtol=1e-6)
  doom = config_lib.compose(configs.PRESETS, env='doom_take_cover', logdir='/tmp/x')
  assert doom.agent.mdnrnn.lr_decay == 0.99999
  car = config_lib.compose(configs.PRESETS, env='car_racing', logdir='/tmp/x')
  assert car.agent.evolve.select_episodes == 1024 and car.agent.mdnrnn.lr_decay == 1.0


def test_restart_flag_zeroes_the_state_and_is_an_input():
  """Doom reference (doomrnn.py): each step reads [z, a, restart]; where restart is set the LSTM
  state is zeroed first, so a joined stream of episodes restarts at each episode's first frame."""
  model = mdnrnn.MDNRNN(z_size=3, hidden=8, predict_done=True, restart_input=True)
  params = mdnrnn.init_params(model, jax.random.PRNGKey(0), action_dim=1)
  assert params['params']['lstm']['ii']['kernel'].shape[0] == 3 + 1 + 1
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32)
  action = jnp.asarray(rng.normal(size=(2, 5, 1)), jnp.float32)
  restart = jnp.asarray([[1, 0, 0, 1, 0], [1, 0, 0, 0, 0]], jnp.float32)
  out, _ = mdnrnn.unroll(model, params, z, action, restart=restart)
  # From step 3 on, row 0 equals a fresh unroll of its steps 3..4 (the state was zeroed).
  fresh, _ = mdnrnn.unroll(model, params, z[:1, 3:], action[:1, 3:], restart=restart[:1, 3:])
  np.testing.assert_allclose(out.mean[0, 3:], fresh.mean[0], rtol=1e-5, atol=1e-6)
  # Row 1 carries its state through step 3: it differs from a fresh start there.
  fresh1, _ = mdnrnn.unroll(model, params, z[1:, 3:], action[1:, 3:], restart=restart[:1, 3:])
  assert not np.allclose(out.mean[1, 3:], fresh1.mean[0], atol=1e-4)
  # The flag is an input too: a flag on a zero state still changes the output.
  no_flag, _ = mdnrnn.unroll(model, params, z[:1, :1], action[:1, :1], restart=restart[:1, :1] * 0)
  assert not np.allclose(out.mean[0, :1], no_flag.mean[0], atol=1e-6)


def test_packed_chunks_join_episodes_like_the_reference():
  """Doom reference rnn_train.py create_batches: shuffled episodes joined into one stream with a
  restart flag on each first frame, cut to B x L x chunks, chunk i + 1 continuing chunk i."""
  from world_models_ha import vm_stages  # pylint: disable=g-import-not-at-top
  lengths = [7, 5, 9, 6]
  horizon = max(lengths)
  series = {'mean': np.zeros((4, horizon, 2), np.float32), 'logvar': np.zeros((4, horizon, 2)),
            'action': np.zeros((4, horizon, 1), np.float32), 'mask': np.zeros((4, horizon), bool)}
  for e, n in enumerate(lengths):
    series['mean'][e, :n, 0] = 100 * e + np.arange(n)   # frame id: episode, index
    series['action'][e, :n, 0] = 100 * e + np.arange(n)
    series['mask'][e, :n] = True
  batch, length = 2, 4
  chunks = vm_stages.packed_chunks(series, np.random.default_rng(3), batch, length)
  order = np.random.default_rng(3).permutation(4)
  stream = np.concatenate([100 * e + np.arange(lengths[e]) for e in order])   # 27 frames
  flags = np.concatenate([np.arange(lengths[e]) == 0 for e in order])
  count = len(stream) // (batch * length)
  assert len(chunks) == count == 3
  rows = stream[:count * batch * length].reshape(batch, -1)
  row_flags = flags[:count * batch * length].reshape(batch, -1)
  for i, chunk in enumerate(chunks):
    frames = rows[:, i * length:(i + 1) * length]
    np.testing.assert_array_equal(chunk['mean'][..., 0], frames)
    np.testing.assert_array_equal(chunk['action'][..., 0], frames[:, :-1])
    np.testing.assert_array_equal(chunk['restart'], row_flags[:, i * length:(i + 1) * length - 1])
    np.testing.assert_array_equal(chunk['done'], row_flags[:, i * length + 1:(i + 1) * length])
    assert chunk['mask'].all() and chunk['mask'].shape == (batch, length - 1)


def test_random_hold_actions_are_the_collection_policy():
  from experiments import diagnose_world_models  # pylint: disable=g-import-not-at-top
  actions = diagnose_world_models.random_hold_actions(np.random.default_rng(0), 50, 200, hold=10)
  assert actions.shape == (50, 200, 1) and set(np.unique(actions)) <= {-1.0, 0.0, 1.0}
  changes = np.flatnonzero(np.diff(actions[..., 0], axis=1) != 0)
  assert len(changes) > 50 * 200 / 10 * 0.3   # holds of 1..10 steps, 2/3 of them a new action
  for row in actions[..., 0]:
    run, longest = 1, 1
    for a, b in zip(row[:-1], row[1:]):
      run = run + 1 if a == b else 1
      longest = max(longest, run)
    assert longest < 60   # a few equal draws in a row, never one endless hold

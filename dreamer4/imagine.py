"""Imagination inside the Dreamer 4 world model (Hafner, Yan and Lillicrap 2025, Sec. 3.2-3.3).

Frames are generated one at a time: a new frame starts as noise and takes K shortcut steps of
size 1 / K (`shortcut.sample`'s rule), reading the frames before it; a generated frame then
becomes context, corrupted with `context_noise` of fresh noise and labelled with that signal
level (Sec. 3.2: "slightly corrupt the past inputs"). Acting uses the agent token's output h_t
of the newest frame. A key-value cache (`transformer.init_cache`) holds the earlier frames'
keys and values of every time layer, so a pass runs one frame.
"""
import jax
import jax.numpy as jnp

from common.nn.distributions import TwoHot
from dreamer4 import dynamics as dynamics_lib
from dreamer4 import shortcut, transformer


def context_level(context_noise: float, k_max: int) -> float:
  """The signal level of context frames: 1 - context_noise on the 1 / K_max grid."""
  return round((1.0 - context_noise) * k_max) / k_max


class Generator:
  """Pure functions over (dynamics params, heads params) that generate and act frame by frame,
  each frame reading the key-value cache of the frames before it (`Dynamics.step`)."""

  def __init__(self, dynamics, heads, k_max: int, sample_steps: int, context_noise: float,
               span: int):
    self.dynamics, self.heads = dynamics, heads
    # A frame reads at most the frames of a training window: span - 1 cached ones and itself.
    self.slots = span - 1
    self.k_max, self.steps = k_max, sample_steps
    self.tau_context = context_level(context_noise, k_max)

  def step(self, params, cache, z, tau, d, action, known, episode, position):
    return self.dynamics.apply({'params': params}, cache, z, tau, d, action, known, episode,
                               position, method=self.dynamics.step)

  def observe(self, params, key, cache, z, action, known, episode, position):
    """Adds a frame as context: corrupted to the context level, labelled with it, written to
    the cache. Returns (its agent output h [B, W], the cache)."""
    batch = z.shape[0]
    tau = jnp.full((batch,), self.tau_context)
    d = jnp.full((batch,), 1.0 / self.k_max)
    noisy = shortcut.noised(z, jax.random.normal(key, z.shape), jnp.asarray(self.tau_context))
    _, h, new = self.step(params, cache, noisy, tau, d, action, known, episode, position)
    return h, transformer.write_cache(cache, new, episode, position)

  def generate(self, params, key, cache, action, known, episode, position, shape):
    """The clean latents [B, S, C] of the next frame: K shortcut steps from noise (Sec. 3.2)."""
    batch = shape[0]

    def predict(frame, tau, d):
      return self.step(params, cache, frame, jnp.full((batch,), tau), jnp.full((batch,), d),
                       action, known, episode, position)[0]

    return shortcut.sample(predict, jax.random.normal(key, shape), self.steps)

  def policy_logits(self, head_params, h):
    return self.heads.apply({'params': head_params}, h, method=self.heads.policy)[:, 0]

  def rollout(self, params, head_params, key, z_context, action_context, known_context,
              episode_context, horizon: int):
    """Imagined trajectories from dataset contexts (one per context, Sec. 3.3).

    z_context [B, C, S, Cz] clean packed latents; action_context, known_context,
    episode_context [B, C]: the action that led to each context frame, whether it is known,
    and its episode (imagination continues the last frame's). The policy, reward and continue
    heads of `head_params` act and judge. Returns a dict of
      h [B, H+1, W] (agent outputs of the last context frame and each generated frame),
      action [B, H], reward [B, H], cont [B, H] (reward and continue of frames 1..H, from
      their own h at the heads' distance 0).
    """
    batch, context = z_context.shape[:2]
    cache = dynamics_lib.empty_cache(self.dynamics, batch, min(context + horizon, self.slots))
    keys = jax.random.split(key, context + 1)
    h = None
    for t in range(context):
      h, cache = self.observe(params, keys[t], cache, z_context[:, t], action_context[:, t],
                              known_context[:, t], episode_context[:, t], jnp.full((batch,), t))
    episode = episode_context[:, -1]
    known = jnp.ones((batch,), bool)

    def step(carry, inputs):
      cache, h = carry
      position, step_key = inputs
      key_action, key_frame, key_context = jax.random.split(step_key, 3)
      action = jax.random.categorical(key_action, self.policy_logits(head_params, h))
      positions = jnp.full((batch,), position)
      frame = self.generate(params, key_frame, cache, action, known, episode, positions,
                            z_context.shape[:1] + z_context.shape[2:])
      h_next, cache = self.observe(params, key_context, cache, frame, action, known, episode,
                                   positions)
      return (cache, h_next), (h_next, action)

    _, (h_next, action) = jax.lax.scan(
        step, (cache, h), (jnp.arange(context, context + horizon),
                           jax.random.split(keys[-1], horizon)))
    h = jnp.concatenate([h[:, None], h_next.swapaxes(0, 1)], 1)
    reward_logits = self.heads.apply({'params': head_params}, h[:, 1:], method=self.heads.reward)
    cont_logits = self.heads.apply({'params': head_params}, h[:, 1:], method=self.heads.cont)
    return {'h': h, 'action': action.swapaxes(0, 1),
            'reward': TwoHot(reward_logits[:, :, 0]).mean(),
            'cont': jax.nn.sigmoid(cont_logits[:, :, 0])}

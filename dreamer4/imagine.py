"""Imagination inside the Dreamer 4 world model (Hafner, Yan and Lillicrap 2025, Sec. 3.2-3.3).

Frames are generated one at a time: a new frame starts as noise and takes K shortcut steps of
size 1 / K (`shortcut.sample`'s rule), reading the frames before it; a generated frame then
becomes context, corrupted with `context_noise` of fresh noise and labelled with that signal
level (Sec. 3.2: "slightly corrupt the past inputs"). Acting uses the agent token's output h_t
of the newest frame. No key-value cache: each pass runs the whole fixed-size buffer, whose
later (still empty) frames the causal attention keeps from being read.
"""
import jax
import jax.numpy as jnp

from common.nn.distributions import TwoHot


def context_level(context_noise: float, k_max: int) -> float:
  """The signal level of context frames: 1 - context_noise on the 1 / K_max grid."""
  return round((1.0 - context_noise) * k_max) / k_max


def corrupt(key, z, tau):
  return (1 - tau) * jax.random.normal(key, z.shape) + tau * z


class Generator:
  """Pure functions over (dynamics params, heads params) for a fixed buffer of frames."""

  def __init__(self, dynamics, heads, k_max: int, sample_steps: int, context_noise: float):
    self.dynamics, self.heads = dynamics, heads
    self.k_max, self.steps = k_max, sample_steps
    self.tau_context = context_level(context_noise, k_max)

  def run(self, params, z, tau, d, action, known, episode):
    return self.dynamics.apply({'params': params}, z, tau, d, action, known, episode)

  def generate(self, params, key, buffer, index):
    """The clean latents of frame `index` [B, S, C] from noise, given the frames before it."""
    z, tau, d, action, known, episode = buffer
    frame = jax.random.normal(key, z.shape[:1] + z.shape[2:])
    step = 1.0 / self.steps
    for i in range(self.steps):
      level = i * step
      z = z.at[:, index].set(frame)
      tau = tau.at[:, index].set(level)
      d = d.at[:, index].set(step)
      prediction, _ = self.run(params, z, tau, d, action, known, episode)
      frame = frame + step * (prediction[:, index] - frame) / (1 - level)
    return frame

  def set_context(self, key, buffer, index, frame):
    """Writes a frame as context: corrupted to the context level, labelled with it."""
    z, tau, d, action, known, episode = buffer
    z = z.at[:, index].set(corrupt(key, frame, self.tau_context))
    tau = tau.at[:, index].set(self.tau_context)
    d = d.at[:, index].set(1.0 / self.k_max)
    return z, tau, d, action, known, episode

  def agent_output(self, params, buffer, index):
    return self.run(params, *buffer)[1][:, index]

  def rollout(self, params, head_params, policy_params, key, z_context, action_context,
              known_context, episode_context, horizon: int):
    """Imagined trajectories from dataset contexts (one per context, Sec. 3.3).

    z_context [B, C, S, Cz] clean packed latents; action_context, known_context,
    episode_context [B, C]: the action that led to each context frame, whether it is known,
    and its episode (imagination continues the last frame's). The policy of
    `policy_params` (heads params) picks the actions. Returns a dict of
      h [B, H+1, W] (agent outputs of the last context frame and each generated frame),
      action [B, H], reward [B, H], cont [B, H] (reward and continue of frames 1..H, from
      their own h, the heads' distance 0).
    """
    batch, context = z_context.shape[:2]
    frames = context + horizon
    pad = lambda x: jnp.concatenate(
        [x, jnp.zeros((batch, horizon) + x.shape[2:], x.dtype)], 1)
    keys = jax.random.split(key, context + 1)
    z = pad(z_context)
    buffer = (z, jnp.zeros((batch, frames)), jnp.ones((batch, frames)) / self.k_max,
              pad(action_context), pad(known_context),
              jnp.concatenate([episode_context, jnp.repeat(episode_context[:, -1:], horizon, 1)], 1))
    for t in range(context):   # the context frames, corrupted as generated ones will be
      buffer = self.set_context(keys[t], buffer, t, z_context[:, t])

    def step(buffer, inputs):
      index, step_key = inputs
      key_action, key_frame, key_context = jax.random.split(step_key, 3)
      h = self.agent_output(params, buffer, index)
      logits = self.heads.apply({'params': policy_params}, h, method=self.heads.policy)[:, 0]
      action = jax.random.categorical(key_action, logits)
      z, tau, d, actions, known, episode = buffer
      buffer = (z, tau, d, actions.at[:, index + 1].set(action),
                known.at[:, index + 1].set(True), episode)
      frame = self.generate(params, key_frame, buffer, index + 1)
      buffer = self.set_context(key_context, buffer, index + 1, frame)
      return buffer, (h, action)

    indices = jnp.arange(context - 1, frames - 1)
    buffer, (h, action) = jax.lax.scan(
        step, buffer, (indices, jax.random.split(keys[-1], horizon)))
    h = jnp.concatenate([h.swapaxes(0, 1), self.agent_output(params, buffer, frames - 1)[:, None]], 1)
    reward_logits = self.heads.apply({'params': head_params}, h[:, 1:], method=self.heads.reward)
    cont_logits = self.heads.apply({'params': head_params}, h[:, 1:], method=self.heads.cont)
    return {'h': h, 'action': action.swapaxes(0, 1),
            'reward': TwoHot(reward_logits[:, :, 0]).mean(),
            'cont': jax.nn.sigmoid(cont_logits[:, :, 0])}

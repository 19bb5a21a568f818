"""The one interface between an algorithm and the shared training loop.

An agent is a NamedTuple of pure functions over pytrees (see DESIGN.md). The
driver and train loop know nothing else about it, so the same agent runs under
the Python driver, under `jax.sharding`, or inside a fully jitted loop.

Conventions (DreamerV3's):
  * Observations are dicts of arrays with a leading batch axis `[N, ...]`:
    `image` (uint8 HxWxC) and/or vector keys (float32), plus `reward`,
    `is_first`, `is_last`, `is_terminal`.
  * Training batches are dicts of `[B, T, ...]` arrays with the same keys and
    `action`. `action[t]` is the action the policy chose after seeing step t;
    `reward[t]` is the reward received on arriving at step t.
  * Discrete actions are int32 indices of shape `[N]`; continuous actions are
    float32 `[N, A]` in [-1, 1].
"""
from typing import Any, Callable, NamedTuple, Optional

Params = Any
State = Any      # the agent's whole training state (a flax.struct dataclass)
Carry = Any      # the policy's recurrent state for N environments
Batch = dict     # str -> array [B, T, ...]
Obs = dict       # str -> array [N, ...]
Metrics = dict   # str -> scalar array (or image/video arrays in `report`)

POLICY_MODES = ('train', 'eval', 'random')


class Agent(NamedTuple):
  """Pure functions; the caller jits them (train with the state donated).

  init(key) -> State
  init_policy_carry(num_envs) -> Carry
  policy(state, carry, obs, key, mode) -> (action, carry)
      mode is static: 'train' (explore), 'eval' (greedy/mode), 'random'.
      The carry must reset itself where obs['is_first'] is set.
  train(state, batch) -> (state, metrics)
  report(state, batch) -> metrics (scalars, and `video/*` arrays [T, H, W, C] uint8)

  Replay context (DreamerV3 code's `replay_context`; optional, 0 for other agents):
  replay_context: K. Training windows then hold K + T steps (T = run.batch_length), and
      the ratio counts the T trained ones.
  policy_entries(carry) -> {key: [N, ...]}: what the policy stores in replay beside each
      step it acted on (V3: its posterior latent). Random actions store zeros.
  train's metrics then hold 'replay': {key: [B, T, ...]}, new entries for the T trained
      steps of the batch, which the loop writes back into replay.
  """
  init: Callable[..., State]
  init_policy_carry: Callable[..., Carry]
  policy: Callable[..., tuple]
  train: Callable[..., tuple]
  report: Callable[..., Metrics]
  replay_context: int = 0
  policy_entries: Optional[Callable[..., dict]] = None

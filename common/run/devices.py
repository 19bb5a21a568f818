"""Where training and acting run: a data-parallel mesh over devices, and several hosts.

As the DreamerV3 reference's `jax.train_devices` / `jax.policy_devices`, with `jax.sharding`
(JAX's "distributed arrays and automatic parallelization" guide):

  * the train step is one jitted program over a 1-D mesh with axis `data` on
    `run.train_devices` (local device indices; empty: all of them). The batch is split
    along its first axis, parameters and optimizer state are replicated, and the compiler
    inserts the gradient all-reduce where the loss averages over the batch;
  * the policy runs on its own mesh over `run.policy_devices` (default: device 0), the
    environments split along `data` where their number divides, with a copy of the train
    state that is refreshed (device to device) the first time it is used after an update;
  * several hosts: `initialize_distributed` calls `jax.distributed.initialize` with the
    coordinator address, process count and id from `run.coordinator`, `run.processes`,
    `run.process_id` or the environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
    JAX_PROCESS_ID). Each host steps its own envs into its own replay; the global batch is
    the hosts' local batches side by side (`jax.make_array_from_process_local_data`).
"""
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = 'data'


def configured_processes(run_config) -> int:
  """The number of hosts a run is configured for (run.processes, else JAX_NUM_PROCESSES)."""
  return run_config.processes or int(os.environ.get('JAX_NUM_PROCESSES', '1'))


def add_xla_flags(flags: str):
  """Appends `flags` (run.xla_flags) to $XLA_FLAGS, which XLA reads when JAX first asks for a
  device; so this must run before that, or the flags would silently do nothing."""
  if not flags or flags in os.environ.get('XLA_FLAGS', ''):
    return
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():
    raise ValueError(f'run.xla_flags={flags!r}: JAX has already started, so XLA would ignore '
                     'them; set them at the start of the run (or in $XLA_FLAGS).')
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + flags).strip()


def initialize_distributed(run_config) -> bool:
  """Joins a multi-host run when one is configured (flags, else environment); True if so.

  Must run before anything asks JAX for a device (a backend query included).
  """
  address = run_config.coordinator or os.environ.get('JAX_COORDINATOR_ADDRESS', '')
  processes = configured_processes(run_config)
  process_id = run_config.process_id
  if process_id < 0:
    process_id = int(os.environ.get('JAX_PROCESS_ID', '0'))
  if processes <= 1:
    return False
  if not address:
    raise ValueError(f'run.processes={processes} needs run.coordinator=HOST:PORT (or '
                     'JAX_COORDINATOR_ADDRESS): the address of process 0.')
  if not 0 <= process_id < processes:
    raise ValueError(f'run.process_id={process_id}: must be in [0, {processes}).')
  # Collectives between CPU processes (tests, CPU clusters); accelerators use their own.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(address, num_processes=processes, process_id=process_id)
  return True


def _pick(indices, what):
  local = jax.local_devices()
  if not indices:
    return local
  bad = [i for i in indices if not 0 <= i < len(local)]
  if bad:
    raise ValueError(f'run.{what}={tuple(indices)}: this host has {len(local)} devices '
                     f'(indices 0..{len(local) - 1}).')
  return [local[i] for i in indices]


def _global_devices(local):
  """The same local indices on every host, in process order (one mesh across hosts)."""
  if jax.process_count() == 1:
    return local
  positions = [jax.local_devices().index(device) for device in local]
  devices = []
  for process in range(jax.process_count()):
    on_host = [d for d in jax.devices() if d.process_index == process]
    devices += [on_host[i] for i in positions]
  return devices


class Placement:
  """Shardings of the train state, the batches and the policy's inputs."""

  def __init__(self, run_config):
    train_local = _pick(tuple(run_config.train_devices), 'train_devices')
    policy_local = _pick(tuple(run_config.policy_devices), 'policy_devices')
    self.train_mesh = Mesh(np.array(_global_devices(train_local)), (AXIS,))
    self.policy_mesh = Mesh(np.array(policy_local), (AXIS,))
    self.replicated = NamedSharding(self.train_mesh, PartitionSpec())
    self.batch_sharding = NamedSharding(self.train_mesh, PartitionSpec(AXIS))
    self.policy_replicated = NamedSharding(self.policy_mesh, PartitionSpec())
    # One row per host, for what differs between hosts (each one's policy RNG).
    self.host_rows = NamedSharding(Mesh(np.array(_global_devices(train_local[:1])), ('hosts',)),
                                   PartitionSpec('hosts'))
    self.local_train_devices = len(train_local)
    self.same_devices = list(self.policy_mesh.devices.flat) == list(self.train_mesh.devices.flat)
    self.run_batch_size = batch = run_config.batch_size
    if batch % self.local_train_devices:
      raise ValueError(f'run.batch_size={batch} must be divisible by the '
                       f'{self.local_train_devices} train devices (run.train_devices), which '
                       'split it.')

  @property
  def train_devices(self) -> int:
    return self.train_mesh.devices.size

  def put_state(self, state):
    """The train state, replicated over the train devices."""
    return jax.device_put(state, self.replicated)

  def put_batch(self, batch: dict):
    """A host's local batch [B, T, ...] -> the global batch split over the train devices."""
    if jax.process_count() == 1:
      return jax.device_put(batch, self.batch_sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)

  def policy_state(self, state):
    """The train state where the policy runs (itself where the devices are the same)."""
    if self.same_devices:
      return state
    if jax.process_count() > 1:
      # A global array cannot move to this host's devices alone; its local copy can.
      state = jax.tree.map(lambda x: x.addressable_data(0), state)
    return jax.device_put(state, self.policy_replicated)

  def local_rows(self, tree):
    """This host's rows of a replicated global batch output (its local batch's rows: the
    global batch is the hosts' local batches side by side, in process order)."""
    if jax.process_count() == 1:
      return tree
    rows = self.run_batch_size
    start = jax.process_index() * rows
    return jax.tree.map(lambda x: x.addressable_data(0)[start:start + rows], tree)

  def policy_sharding(self, num_envs: int):
    """The environments split over the policy devices where their number divides."""
    if num_envs % self.policy_mesh.devices.size == 0:
      return NamedSharding(self.policy_mesh, PartitionSpec(AXIS))
    return self.policy_replicated

  def stack_hosts(self, tree):
    """Values that differ between hosts as global arrays [hosts, ...] (row p from host p),
    which a multi-host checkpoint can hold; with one host, `tree` itself."""
    if jax.process_count() == 1:
      return tree
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        self.host_rows, np.asarray(x)[None]), tree)

  def own_row(self, tree):
    """This host's row of `stack_hosts`' arrays; with one host, `tree` itself."""
    if jax.process_count() == 1:
      return tree
    return jax.tree.map(lambda x: x.addressable_data(0)[0], tree)

  def describe(self) -> str:
    kinds = {d.device_kind for d in self.train_mesh.devices.flat}
    hosts = f' on {jax.process_count()} hosts' if jax.process_count() > 1 else ''
    return (f'training on {self.train_devices} {"/".join(sorted(kinds))} device(s){hosts} '
            f'(data parallel), acting on {self.policy_mesh.devices.size}')

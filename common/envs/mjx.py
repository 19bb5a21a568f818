"""DeepMind Control Suite tasks simulated by MuJoCo MJX (JAX): `mjx_<domain>_<task>`.

`mjx_cartpole_balance`, `mjx_cartpole_swingup`, `mjx_reacher_easy`, `mjx_reacher_hard`,
`mjx_point_mass_easy`, `mjx_cheetah_run`, `mjx_walker_stand`, `mjx_walker_walk`,
`mjx_walker_run`, `mjx_hopper_stand` and `mjx_hopper_hop` as `JaxEnv`s (`common/envs/jax_env.py`), so
`--loop device` compiles them into its program and the Python loop steps them vmapped. The
model is dm_control's own (loaded through `dm_control.suite`, so the XML and its assets are
the package's); physics runs in MJX (`mujoco.mjx`, pure JAX). Each task's observation,
reward and episode initialisation are re-written in JAX from the dm_control task of the same
name (dm_control/suite/<domain>.py); `tests/common/envs/test_envs_mjx.py` checks observations and
rewards against dm_control's on the same simulator states, and MJX's steps against MuJoCo's.

Observations: the dm_control keys of the `dmc_` adapter (`position`, `velocity`, reacher's
`to_target`), float32 [k] (EnvConfig.proprio), and with EnvConfig.pixels an `image` uint8
[H, W, 3] from the papers' camera (as `dmc_`), ray cast in JAX (`common/envs/mjx_render.py`:
the same geoms from the same camera as dm_control's render, in flat colours).
Actions: float32 [A] in [-1, 1] rescaled to the actuators' control range, repeated
`action_repeat` times with rewards summed (the `dmc` suite's 2). Episodes end after the
task's 1000 control steps: is_last, not is_terminal.

Differences from dm_control (FIDELITY.md, "MJX control tasks"): the initial-state noise is
drawn from JAX's RNG (same distributions, other numbers); MJX's solver and collision code
match MuJoCo's to float tolerance, not bit for bit; cartpole's energy bookkeeping (used by
nothing here) is off, as MJX does not implement it.
"""
import os

import numpy as np

from common.envs.base import step_spaces
from common.envs.config import EnvConfig
from common.envs.jax_env import JaxEnv
from common.envs.spaces import Space

os.environ.setdefault('MUJOCO_GL', 'egl')   # dm_control loads the model; nothing renders

INSTALL = 'pip install mujoco-mjx (the version of the installed mujoco; Python >= 3.12)'
TASKS = ('cartpole_balance', 'cartpole_swingup', 'reacher_easy', 'reacher_hard',
         'point_mass_easy', 'cheetah_run', 'walker_stand', 'walker_walk', 'walker_run',
         'hopper_stand', 'hopper_hop')


def check_task(task: str):
  if task not in TASKS:
    raise ValueError(f"Unknown MJX task '{task}' (name mjx_{task}); one of: "
                     f"{', '.join(TASKS)}.")


def _mjx():
  import contextlib
  import io
  try:
    # MJX prints two lines on import where its optional warp backend is missing (unused here).
    with contextlib.redirect_stdout(io.StringIO()):
      from mujoco import mjx  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f'mjx envs need MuJoCo MJX: {INSTALL}.') from None
  return mjx


def tolerance(x, lower=0.0, upper=0.0, margin=0.0, sigmoid='gaussian', value_at_margin=0.1):
  """dm_control's `rewards.tolerance` in JAX: 1 inside [lower, upper], falling off outside
  over `margin` as `sigmoid` (gaussian, linear, quadratic: the ones the tasks here use)."""
  import jax.numpy as jnp
  inside = (lower <= x) & (x <= upper)
  if margin == 0:
    return jnp.where(inside, 1.0, 0.0)
  distance = jnp.where(x < lower, lower - x, x - upper) / margin
  if sigmoid == 'gaussian':
    scale = np.sqrt(-2 * np.log(value_at_margin))
    outside = jnp.exp(-0.5 * (distance * scale) ** 2)
  elif sigmoid == 'linear':
    scaled = distance * (1 - value_at_margin)
    outside = jnp.where(jnp.abs(scaled) < 1, 1 - scaled, 0.0)
  elif sigmoid == 'quadratic':
    scaled = distance * np.sqrt(1 - value_at_margin)
    outside = jnp.where(jnp.abs(scaled) < 1, 1 - scaled ** 2, 0.0)
  else:
    raise ValueError(f'tolerance: unknown sigmoid {sigmoid!r}.')
  return jnp.where(inside, 1.0, outside)


class _Task:
  """One dm_control task: `initial(key) -> (qpos, qvel, goal)`, `observe(data, goal)`,
  `reward(data, goal)`; `goal` is the per-episode randomisation that lives in the model in
  dm_control (reacher's target), [2] (zeros where there is none). An episode starts after
  `settle_steps` simulator steps from the initial state (cheetah's 200)."""

  settle_steps = 0
  substeps = 1   # simulator steps per control step (set from dm_control's control timestep)
  limited_only = False   # the default `initial` draws only limited joints (cheetah)

  def __init__(self, model):
    self.model = model            # mujoco.MjModel (host)

  def scene(self, data, goal):
    """`data` as the camera sees it (the goal drawn where dm_control puts it in the model)."""
    del goal
    return data

  def geom(self, name):
    import mujoco
    return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, name)

  def body(self, name):
    import mujoco
    return mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, name)

  def sensor(self, name):
    """The address of sensor `name`'s first value in `data.sensordata`."""
    import mujoco
    return int(self.model.sensor_adr[
        mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SENSOR, name)])

  def initial(self, key):
    """dm_control's usual episode start: the joints drawn by `randomize_joints`, at rest, no
    goal."""
    import jax.numpy as jnp
    qpos = self.randomize_joints(key, jnp.asarray(self.model.qpos0, jnp.float32),
                                 self.limited_only)
    return qpos, jnp.zeros(self.model.nv), jnp.zeros(2)

  def randomize_joints(self, key, qpos, limited_only=False):
    """`randomizers.randomize_limited_and_rotational_joints` for hinge and slide joints:
    limited ones uniform in their range, unlimited hinges uniform in [-pi, pi] (unless
    `limited_only`, as cheetah draws)."""
    import jax
    import jax.numpy as jnp
    import mujoco
    model = self.model
    hinge, slide = int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)
    for joint in range(model.njnt):
      key, draw = jax.random.split(key)
      kind, address = int(model.jnt_type[joint]), int(model.jnt_qposadr[joint])
      if kind not in (hinge, slide):
        continue
      if model.jnt_limited[joint]:
        low, high = model.jnt_range[joint]
      elif kind == hinge and not limited_only:
        low, high = -np.pi, np.pi
      else:
        continue
      qpos = qpos.at[address].set(jax.random.uniform(draw, (), jnp.float32, low, high))
    return qpos


class _Cartpole(_Task):
  """dm_control cartpole.Balance (one pole, smooth reward)."""

  def __init__(self, model, swing_up):
    super().__init__(model)
    self.swing_up = swing_up

  def initial(self, key):
    import jax
    import jax.numpy as jnp
    position_key, velocity_key = jax.random.split(key)
    if self.swing_up:
      qpos = 0.01 * jax.random.normal(position_key, (2,)) + jnp.array([0.0, np.pi])
    else:
      qpos = jax.random.uniform(position_key, (2,), minval=jnp.array([-0.1, -0.034]),
                                maxval=jnp.array([0.1, 0.034]))
    return qpos, 0.01 * jax.random.normal(velocity_key, (2,)), jnp.zeros(2)

  def observe(self, data, goal):
    import jax.numpy as jnp
    pole = data.xmat[2]   # body 2: the pole; dm_control's xmat 'zz' and 'xz'
    return {'position': jnp.stack([data.qpos[0], pole[2, 2], pole[0, 2]]),
            'velocity': data.qvel}

  def reward(self, data, goal):
    upright = (data.xmat[2][2, 2] + 1) / 2
    centered = (1 + tolerance(data.qpos[0], margin=2)) / 2
    small_control = (4 + tolerance(data.ctrl[0], margin=1, value_at_margin=0,
                                   sigmoid='quadratic')) / 5
    small_velocity = (1 + tolerance(data.qvel[1], margin=5)) / 2
    return upright * small_control * small_velocity * centered


class _Reacher(_Task):
  """dm_control reacher.Reacher: the target's position is drawn per episode (in dm_control
  it moves the target geom in the model; here it is the episode's `goal`, read by the reward
  and drawn there in pixels; the target geom collides with nothing)."""

  def __init__(self, model, target_size: float):
    super().__init__(model)
    self.target_size = target_size

  def initial(self, key):
    import jax
    import jax.numpy as jnp
    joint_key, angle_key, radius_key, _ = jax.random.split(key, 4)
    qpos = self.randomize_joints(joint_key, jnp.asarray(self.model.qpos0, jnp.float32))
    angle = jax.random.uniform(angle_key, (), minval=0.0, maxval=2 * np.pi)
    radius = jax.random.uniform(radius_key, (), minval=0.05, maxval=0.20)
    goal = jnp.stack([radius * jnp.sin(angle), radius * jnp.cos(angle)])
    return qpos, jnp.zeros(self.model.nv), goal

  def to_target(self, data, goal):
    return goal - data.geom_xpos[self.geom('finger'), :2]

  def scene(self, data, goal):
    return data.replace(geom_xpos=data.geom_xpos.at[self.geom('target'), :2].set(goal))

  def observe(self, data, goal):
    return {'position': data.qpos, 'to_target': self.to_target(data, goal),
            'velocity': data.qvel}

  def reward(self, data, goal):
    import jax.numpy as jnp
    radii = self.target_size + self.model.geom_size[self.geom('finger'), 0]
    return tolerance(jnp.linalg.norm(self.to_target(data, goal)), 0.0, radii)


class _PointMass(_Task):
  """dm_control point_mass.PointMass without gain randomisation (the easy task)."""

  def observe(self, data, goal):
    return {'position': data.qpos, 'velocity': data.qvel}

  def reward(self, data, goal):
    import jax.numpy as jnp
    target = self.geom('target')
    size = self.model.geom_size[target, 0]
    distance = jnp.linalg.norm(data.geom_xpos[target] - data.geom_xpos[self.geom('pointmass')])
    near_target = tolerance(distance, 0.0, size, margin=size)
    control = tolerance(data.ctrl, margin=1, value_at_margin=0, sigmoid='quadratic').mean()
    return near_target * (control + 4) / 5


class _Cheetah(_Task):
  """dm_control cheetah.Cheetah: limited joints drawn in their ranges, then 200 simulator
  steps to settle (`settle_steps`), run reward over 10 m/s."""

  settle_steps = 200
  limited_only = True

  def observe(self, data, goal):
    return {'position': data.qpos[1:], 'velocity': data.qvel}

  def reward(self, data, goal):
    speed = data.sensordata[self.sensor('torso_subtreelinvel')]
    return tolerance(speed, 10.0, np.inf, margin=10.0, value_at_margin=0, sigmoid='linear')


class _Walker(_Task):
  """dm_control walker.PlanarWalker: every rotational and limited joint drawn (the root's
  hinge over [-pi, pi], so the walker starts falling), stand reward from the torso's height
  and uprightness, times a move reward over `move_speed` (0: stand)."""

  stand_height = 1.2

  def __init__(self, model, move_speed: float):
    super().__init__(model)
    self.move_speed = move_speed
    self.torso = self.body('torso')
    self.velocity_address = self.sensor('torso_subtreelinvel')

  def observe(self, data, goal):
    return {'orientations': data.xmat[1:, 0, :][:, ::2],   # each body's 'xx' and 'xz'
            'height': data.xpos[self.torso, 2], 'velocity': data.qvel}

  def reward(self, data, goal):
    standing = tolerance(data.xpos[self.torso, 2], self.stand_height, np.inf,
                         margin=self.stand_height / 2)
    upright = (1 + data.xmat[self.torso][2, 2]) / 2
    stand = (3 * standing + upright) / 4
    if self.move_speed == 0:
      return stand
    move = tolerance(data.sensordata[self.velocity_address], self.move_speed, np.inf,
                     margin=self.move_speed / 2, value_at_margin=0.5, sigmoid='linear')
    return stand * (5 * move + 1) / 6


class _Hopper(_Task):
  """dm_control hopper.Hopper: every rotational and limited joint drawn; observations of the
  joints (without the horizontal position) and the log1p of the two foot touch sensors;
  reward for the torso's height over the foot in [0.6, 2], times hopping faster than 2 m/s
  (hop) or small controls (stand)."""

  stand_height, hop_speed = 0.6, 2.0

  def __init__(self, model, hopping: bool):
    super().__init__(model)
    self.hopping = hopping
    self.torso, self.foot = self.body('torso'), self.body('foot')
    self.velocity_address = self.sensor('torso_subtreelinvel')
    self.touch_addresses = np.array([self.sensor('touch_toe'), self.sensor('touch_heel')])

  def observe(self, data, goal):
    import jax.numpy as jnp
    return {'position': data.qpos[1:], 'velocity': data.qvel,
            'touch': jnp.log1p(data.sensordata[self.touch_addresses])}

  def reward(self, data, goal):
    height = data.xipos[self.torso, 2] - data.xipos[self.foot, 2]
    standing = tolerance(height, self.stand_height, 2.0)
    if self.hopping:
      return standing * tolerance(data.sensordata[self.velocity_address], self.hop_speed,
                                  np.inf, margin=self.hop_speed / 2, value_at_margin=0.5,
                                  sigmoid='linear')
    small_control = tolerance(data.ctrl, margin=1, value_at_margin=0, sigmoid='quadratic')
    return standing * (small_control.mean() + 4) / 5


def _make_task(task: str):
  """The dm_control model (from the package) and the task's JAX functions."""
  import mujoco
  from dm_control import suite
  from common.envs.dmc import split_task
  domain, name = split_task(task)
  env = suite.load(domain, name)
  model = env.physics.model.ptr
  # Energy bookkeeping: not implemented in MJX and read by none of these tasks.
  model.opt.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_ENERGY)
  if domain == 'cartpole':
    task = _Cartpole(model, swing_up=name == 'swingup')
  elif domain == 'reacher':
    task = _Reacher(model, target_size={'easy': 0.05, 'hard': 0.015}[name])
  elif domain == 'point_mass':
    task = _PointMass(model)
  elif domain == 'walker':   # dm_control walker.py: _WALK_SPEED 1, _RUN_SPEED 8
    task = _Walker(model, move_speed={'stand': 0.0, 'walk': 1.0, 'run': 8.0}[name])
  elif domain == 'hopper':
    task = _Hopper(model, hopping=name == 'hop')
  else:
    task = _Cheetah(model)
  # Simulator steps per control step (walker: 0.025 s / 0.0025 s = 10; the others 1).
  task.substeps = int(round(env.control_timestep() / model.opt.timestep))
  return model, task


def _acceleration_sensors(model):
  """bool [nsensordata]: the entries of sensors computed at the acceleration stage."""
  import mujoco
  mask = np.zeros(model.nsensordata, bool)
  for sensor in range(model.nsensor):
    start = int(model.sensor_adr[sensor])
    mask[start:start + int(model.sensor_dim[sensor])] = (
        int(model.sensor_needstage[sensor]) == int(mujoco.mjtStage.mjSTAGE_ACC))
  return mask


class MjxEnv(JaxEnv):
  """One DMC task in MJX as a `JaxEnv`.

  Its env state is what the next step needs, not MJX's whole `Data` (whose contact and
  constraint buffers would fill replay checkpoints): joint positions and velocities, the
  solver's warm start, the control steps taken and the episode's goal. Everything else is
  recomputed from them (`mjx.forward`) inside the step."""

  def __init__(self, task: str, config: EnvConfig):
    check_task(task)
    mjx = _mjx()
    if config.action_repeat < 1:
      raise ValueError(f'EnvConfig.action_repeat = {config.action_repeat} must be >= 1.')
    if not config.pixels and not config.proprio:
      raise ValueError('EnvConfig: pixels=False and proprio=False leave no observation.')
    self._repeat = int(config.action_repeat)
    self._control_steps = 1000   # every task here: time limit / control timestep
    self._time_limit = int(config.time_limit)
    self.model, self._task = _make_task(task)
    self.expensive_reset = self._task.settle_steps > 0
    self._mx = mjx.put_model(self.model)
    self._blank = mjx.make_data(self._mx)
    self._proprio = bool(config.proprio)
    self.renderer = None
    if config.pixels:
      from common.envs.dmc import CAMERAS, split_task
      from common.envs.mjx_render import RayRenderer
      camera = config.camera if config.camera >= 0 else CAMERAS.get(split_task(task)[0], 0)
      self.renderer = RayRenderer(self.model, tuple(config.size), camera)
    self._acceleration_sensors = _acceleration_sensors(self.model)
    self._low = np.asarray(self.model.actuator_ctrlrange[:, 0], np.float32)
    self._high = np.asarray(self.model.actuator_ctrlrange[:, 1], np.float32)
    self.act_space = Space(np.float32, (self.model.nu,), -1.0, 1.0)
    self.obs_space = {}
    if self._proprio:
      shapes = {key: np.shape(value) for key, value in
                self._task.observe(self._blank, np.zeros(2, np.float32)).items()}
      self.obs_space = {key: Space(np.float32, (int(np.prod(shape)) or 1,), -np.inf, np.inf)
                        for key, shape in shapes.items()}
    if self.renderer is not None:
      self.obs_space['image'] = Space(np.uint8, self.renderer.size + (3,), 0, 255)
    self.obs_space.update(step_spaces())

  def state(self, qpos, qvel, goal=None, steps=0) -> dict:
    """The env state at joint positions `qpos` [nq] and velocities `qvel` [nv] (a recorded
    state, or dm_control's), `steps` control steps into an episode with `goal` [2]."""
    import jax.numpy as jnp
    goal = jnp.zeros(2) if goal is None else goal
    return {'qpos': jnp.asarray(qpos, jnp.float32), 'qvel': jnp.asarray(qvel, jnp.float32),
            'warmstart': jnp.zeros(self.model.nv, jnp.float32), 'steps': jnp.int32(steps),
            'goal': jnp.asarray(goal, jnp.float32)}

  def _data(self, state):
    return self._blank.replace(qpos=state['qpos'], qvel=state['qvel'],
                               qacc_warmstart=state['warmstart'])

  def _observe(self, data, goal):
    import jax.numpy as jnp
    obs = {}
    if self._proprio:
      obs = {key: jnp.ravel(value).astype(jnp.float32)
             for key, value in self._task.observe(data, goal).items()}
    if self.renderer is not None:
      obs['image'] = self.renderer.render(self._mx, self._task.scene(data, goal))
    return obs

  def reset_one(self, key):
    import jax
    mjx = _mjx()
    qpos, qvel, goal = self._task.initial(key)
    state = self.state(qpos, qvel, goal)
    data = self._data(state)
    if self._task.settle_steps:
      data = jax.lax.fori_loop(0, self._task.settle_steps,
                               lambda _, data: mjx.step(self._mx, data), data)
    data = mjx.forward(self._mx, data)
    state.update(qpos=data.qpos, qvel=data.qvel, warmstart=data.qacc_warmstart)
    return self._observe(data, goal), state

  def step_one(self, key, state, action):
    import jax
    import jax.numpy as jnp
    mjx = _mjx()
    ctrl = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
    goal = state['goal']

    def control_step(carry, _):
      data, steps, reward = carry
      active = steps < self._control_steps   # a repeat past the limit does nothing
      # MJX's step leaves positions-dependent quantities at the state before integrating;
      # the forward pass brings them to the new state, which dm_control observes.
      stepped = jax.lax.fori_loop(0, self._task.substeps,
                                  lambda _, data: mjx.step(self._mx, data),
                                  data.replace(ctrl=ctrl))
      # As dm_control's step, which ends with mj_step1: position and velocity quantities at
      # the new state, acceleration-stage sensors (touch) from the last step's forces.
      forwarded = mjx.forward(self._mx, stepped)
      stepped = forwarded.replace(sensordata=jnp.where(
          self._acceleration_sensors, stepped.sensordata, forwarded.sensordata))
      data = jax.tree.map(lambda new, old: jnp.where(active, new, old), stepped, data)
      reward = reward + jnp.where(active, self._task.reward(data, goal), 0.0)
      return (data, steps + active.astype(jnp.int32), reward), None

    (data, steps, reward), _ = jax.lax.scan(
        control_step, (self._data(state), state['steps'], jnp.float32(0.0)), None,
        self._repeat)
    agent_steps = steps // self._repeat
    cut = steps >= self._control_steps
    if self._time_limit:
      cut = cut | (agent_steps >= self._time_limit)
    obs = self._observe(data, goal)
    obs.update(reward=reward.astype(jnp.float32), is_last=cut, is_terminal=jnp.bool_(False))
    return obs, {'qpos': data.qpos, 'qvel': data.qvel, 'warmstart': data.qacc_warmstart,
                 'steps': steps, 'goal': goal}

"""Pixels of an MJX scene in JAX, by casting one ray per pixel (`mujoco.mjx.ray`).

MJX has no renderer that runs inside a jitted program on every backend (MuJoCo's OpenGL
renderer runs on the host; Madrona's batch renderer needs a CUDA build). `RayRenderer`
casts, from one of the model's cameras, the ray through each pixel's centre and colours the
pixel flat by the first visible geom it hits: the geom's colour (its material's where it
has one, times its texture's mean colour where that has a texture), or the skybox
texture's mean colour where the ray hits nothing. The image shows the same geometry from the
same camera as dm_control's render (`tests/common/envs/test_envs_mjx.py` compares which geom
each pixel shows), without lighting, texture patterns (the floor's grid), shadows or
anti-aliasing (FIDELITY.md, "MJX control tasks").
"""
import numpy as np

# MuJoCo's default: geom groups 0, 1 and 2 are visible.
VISIBLE_GROUPS = (1, 1, 1, 0, 0, 0)


class RayRenderer:
  """`render(mx, data) -> uint8 [H, W, 3]` from camera `camera` of `model` (host MjModel)."""

  def __init__(self, model, size=(64, 64), camera=0):
    if not 0 <= camera < model.ncam:
      raise ValueError(f'camera={camera}: the model has {model.ncam} cameras (0..'
                       f'{model.ncam - 1}; env.camera=-1 picks the papers\' camera).')
    height, width = size
    self.size = (int(height), int(width))
    self.camera = int(camera)
    # Ray directions in the camera's frame (it looks along -z with y up), through the pixel
    # centres, row 0 at the top; the vertical field of view is the camera's fovy.
    half = np.tan(np.deg2rad(model.cam_fovy[camera]) / 2)
    xs = ((np.arange(width) + 0.5) / width * 2 - 1) * half * width / height
    ys = (1 - (np.arange(height) + 0.5) / height * 2) * half
    grid = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], -np.ones((1, 1))), -1)
    self._directions = (grid / np.linalg.norm(grid, axis=-1, keepdims=True)).reshape(-1, 3)
    rgb = np.array(model.geom_rgba, np.float32)[:, :3]
    material = np.asarray(model.geom_matid)
    rgb[material >= 0] = _material_colors(model)[material[material >= 0]]
    self._colors = np.concatenate([rgb, _background(model)[None]])
    self._visible = tuple(int(v) for v in VISIBLE_GROUPS)

  @property
  def palette(self):
    """uint8 [geoms + 1, 3]: each geom's colour, then the background's."""
    return np.clip(np.round(self._colors * 255), 0, 255).astype(np.uint8)

  def hits(self, mx, data):
    """Per pixel: the geom id hit first (-1: none) and the distance to it, [H, W]."""
    import jax
    from mujoco import mjx
    world = self._directions.astype(np.float32) @ data.cam_xmat[self.camera].T
    origin = data.cam_xpos[self.camera]
    distance, geom = jax.vmap(lambda vec: mjx.ray(mx, data, origin, vec, self._visible))(world)
    return geom.reshape(self.size), distance.reshape(self.size)

  def render(self, mx, data):
    """uint8 [H, W, 3]: each pixel in the colour of the geom it shows."""
    import jax.numpy as jnp
    geom, _ = self.hits(mx, data)
    return jnp.asarray(self.palette)[geom]   # -1 (no geom) picks the last: the background


def _texture_mean(model, texture):
  """The mean RGB of a texture, in [0, 1]."""
  start = int(model.tex_adr[texture])
  pixels = int(model.tex_height[texture]) * int(model.tex_width[texture])
  channels = int(model.tex_nchannel[texture])
  data = np.asarray(model.tex_data[start:start + pixels * channels]).reshape(pixels, channels)
  return data[:, :3].mean(0).astype(np.float32) / 255


def _material_colors(model):
  """Each material's colour times the mean colour of its RGB texture (if any), [nmat, 3]."""
  import mujoco
  colors = np.array(model.mat_rgba, np.float32)[:, :3]
  textures = np.asarray(model.mat_texid)
  if textures.ndim == 2:   # one texture per role (MuJoCo >= 3.2)
    textures = textures[:, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)]
  for index, texture in enumerate(textures):
    if texture >= 0:
      colors[index] *= _texture_mean(model, texture)
  return colors


def _background(model):
  """What a ray that hits nothing shows: the skybox texture's mean colour (black without)."""
  import mujoco
  skybox = int(mujoco.mjtTexture.mjTEXTURE_SKYBOX)
  for texture in range(model.ntex):
    if int(model.tex_type[texture]) == skybox:
      return _texture_mean(model, texture)
  return np.zeros(3, np.float32)

"""Fetch, on a machine with network, what the GPU image lacks for `experiments.device_check`.

  python -m experiments.fetch_wheels [--dest .whl]

The lent GPU machines have no network and Python 3.12 with jax 0.11.2, numpy, flax, optax,
chex, orbax-checkpoint, tensorboard, scipy, lxml, cloudpickle and more
(/work/.library/device/KINDS.md), but not the packages below. This downloads them as
Python 3.12 manylinux x86_64 wheels, without their dependencies (each one the image lacks
is named here), into the ignored folder `.whl/`. It repacks dm_control without the assets
DMC's classic tasks never load (locomotion, soccer, dog, test models) and copies the one
published curve the check compares with into `.whl/reference_scores/`. Everything must
stay under 64 MiB, the most one device call carries. Install there with

  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
      --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

# The versions this suite is tested with on Python 3.12 (README), and what they need that the
# image lacks.
WHEELS = (
    'distrax==0.1.9', 'tfp-nightly==0.26.0.dev20261027', 'decorator==5.3.1', 'gast==0.7.0',
    'dm-tree==0.1.10', 'tensorboardX==2.6.5', 'dm-control==1.0.50', 'mujoco==3.17.0',
    'dm-env==1.6', 'glfw==2.11.0', 'labmaze==1.0.6', 'PyOpenGL==3.1.10',
    'gymnasium==1.4.0', 'farama-notifications==0.0.4',
    # The JAX-native envs of `--loop device` (experiments/bench_device_loop.py); craftax's
    # pygame is only for its human-play viewer.
    'gymnax==1.0.1', 'craftax==1.6.1',
    # The mjx_<domain>_<task> envs (MuJoCo MJX; its warp backend is not used).
    'mujoco-mjx==3.17.0', 'trimesh==5.2.0',
)
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64', 'manylinux_2_17_x86_64',
             'manylinux2014_x86_64', 'manylinux1_x86_64')
# Folders of the dm_control wheel that `dm_control.suite`'s classic tasks never read.
DM_CONTROL_DROP = ('dm_control/locomotion/', 'dm_control/suite/dog_assets/',
                   'dm_control/mujoco/testing/', 'dm_control/mjcf/test_assets/',
                   'dm_control/blender/', 'dm_control/suite/all_domains.png')
# What of the MuJoCo MJX wheel its JAX backend never reads (16 MiB of test models).
MJX_DROP = ('mujoco/mjx/test_data/', 'mujoco/mjx/integration_test/')
LIMIT = 64 * 2 ** 20
REFERENCE = 'dmc_proprio-dreamerv3.json.gz'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def download(dest: str, wheels=WHEELS):
  platforms = [arg for platform in PLATFORMS for arg in ('--platform', platform)]
  subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps',
                  '--only-binary=:all:', '--python-version', '3.12', '--implementation', 'cp',
                  *platforms, '-d', dest, *wheels], check=True)


def repack_without(path: str, prefixes) -> int:
  """Rewrites the wheel at `path` without the files under `prefixes` (RECORD too); the bytes saved."""
  before = os.path.getsize(path)
  with tempfile.NamedTemporaryFile(dir=os.path.dirname(path), delete=False) as tmp:
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as dst:
      for info in src.infolist():
        if info.filename.startswith(prefixes):
          continue
        data = src.read(info)
        if info.filename.endswith('.dist-info/RECORD'):
          kept = [line for line in data.decode().splitlines()
                  if not line.startswith(prefixes)]
          data = ('\n'.join(kept) + '\n').encode()
        dst.writestr(info, data)
  os.replace(tmp.name, path)
  return before - os.path.getsize(path)


def main(argv=None):
  parser = argparse.ArgumentParser(prog='experiments.fetch_wheels',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--dest', default=os.path.join(ROOT, '.whl'))
  parser.add_argument('--reference', default=os.path.join(ROOT, '..', 'shared',
                                                          'reference_scores', REFERENCE))
  args = parser.parse_args(argv)
  os.makedirs(args.dest, exist_ok=True)
  download(args.dest)
  for path in glob.glob(os.path.join(args.dest, 'dm_control-*.whl')):
    saved = repack_without(path, DM_CONTROL_DROP)
    print(f'{os.path.basename(path)}: {saved / 2 ** 20:.1f} MiB of unused assets dropped')
  for path in glob.glob(os.path.join(args.dest, 'mujoco_mjx-*.whl')):
    saved = repack_without(path, MJX_DROP)
    print(f'{os.path.basename(path)}: {saved / 2 ** 20:.1f} MiB of test models dropped')
  if os.path.exists(args.reference):
    folder = os.path.join(args.dest, 'reference_scores')
    os.makedirs(folder, exist_ok=True)
    shutil.copy(args.reference, folder)
  total = sum(os.path.getsize(os.path.join(folder, name))
              for folder, _, names in os.walk(args.dest) for name in names)
  print(f'{args.dest}: {total / 2 ** 20:.1f} MiB in all (limit {LIMIT / 2 ** 20:.0f})')
  if total > LIMIT:
    raise SystemExit(f'{args.dest} holds {total / 2 ** 20:.1f} MiB: over the 64 MiB one device '
                     'call carries; drop a wheel the check does not need.')
  return total


if __name__ == '__main__':
  main(sys.argv[1:])

"""World-model RL in JAX: World Models, PlaNet, DreamerV1/V2/V3."""
import setuptools

setuptools.setup(
    name='worldmodels-jax',
    version='0.1.0',
    description='World Models, PlaNet and DreamerV1/V2/V3 in JAX/Flax over shared primitives.',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=[
        'common', 'common.*', 'dreamer', 'dreamer.*', 'planet', 'planet.*',
        'world_models_ha', 'world_models_ha.*', 'experiments', 'experiments.*']),
    install_requires=[
        # Bounds are the versions known to install and pass the tests together: on Python
        # 3.12, jax 0.12.0.1 / flax 0.12.12 / optax 0.2.8 / chex 0.1.92 / orbax 0.12.8 /
        # numpy 2.5; on 3.11, where pip stops at jax 0.10.2 (0.11 needs Python >= 3.12).
        'numpy>=1.26,<3',
        'jax>=0.6,<0.13',
        'flax>=0.10,<0.13',
        'optax>=0.2.4,<0.3',
        'chex>=0.1.88,<0.2',
        'distrax>=0.1.5,<0.2',
        # distrax needs TFP; the tensorflow-probability release fails to import on
        # current JAX, so the nightly is used (never install both).
        'tfp-nightly>=0.26.0.dev0',
        'orbax-checkpoint>=0.11,<0.13',
        'tensorboardX>=2.6,<3',
        'pillow>=10',
        'absl-py>=2',
        'pyyaml>=6',
        'gymnasium[box2d]>=1.0,<2',
        'ale-py>=0.10,<0.13',
        'dm-control>=1.0.30,<1.1',
        # dm-control 1.0.50 breaks on mujoco 4 ('flex_vertedge').
        'mujoco>=3.2,<4',
        # mjx_<domain>_<task> envs: MuJoCo MJX, the installed mujoco's version (pip pairs them).
        'mujoco-mjx>=3.2,<4; python_version >= "3.12"',
        'crafter>=1.8,<2',
        'craftax>=1.4,<2',
        'vizdoom>=1.2,<2',
        'evosax>=0.2,<0.4',
        'imageio>=2.30',
        'matplotlib>=3.8',
        'rliable>=1.2',
        'psutil>=5',
    ],
    extras_require={
        # The reference DreamerV3's own dependencies, for the parity test
        # (tests/experiments/test_reference_parity.py imports it from a path).
        'test': ['pytest>=8', 'pytest-xdist>=3', 'ninjax==3.6.3', 'elements==3.22.4',
                 'portal==3.8.3', 'einops>=0.8', 'ruamel.yaml>=0.18'],
        'ray': ['ray[default]>=2.9'],
        # The CUDA build of JAX for GPUs: pip install -e .[cuda]
        'cuda': ['jax[cuda12]>=0.6,<0.13'],
    },
)

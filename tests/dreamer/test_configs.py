"""Presets of dreamer/configs.py against the DreamerV3 paper's table (issue 4) and the CLI."""
import pytest

from common.envs import atari as atari_env
from common.run import config as config_lib
from dreamer import configs

# DreamerV3 model sizes: deter, hidden, classes, CNN depth, MLP units.
PAPER_SIZES = {
    'size1m': (512, 64, 4, 4, 64),
    'size12m': (2048, 256, 16, 16, 256),
    'size25m': (3072, 384, 24, 24, 384),
    'size50m': (4096, 512, 32, 32, 512),
    'size100m': (6144, 768, 48, 48, 768),
    'size200m': (8192, 1024, 64, 64, 1024),
    'size400m': (12288, 1536, 96, 96, 1536),
}


def parse(*argv):
  return config_lib.parse(list(argv), configs.PRESETS, prog='dreamer.main')


@pytest.mark.parametrize('size', sorted(PAPER_SIZES))
def test_sizes_match_paper_table(size):
  config = parse('--config', 'dreamerv3', '--env', 'atari_pong', '--size', size)
  agent = config.agent
  got = (agent.rssm.deter, agent.rssm.hidden, agent.rssm.classes, agent.encoder.depth,
         agent.actor.units)
  assert got == PAPER_SIZES[size]
  assert agent.rssm.stoch == 32 and agent.rssm.blocks == 8
  assert agent.encoder.mults == (2, 3, 4, 4) and agent.encoder.kernel == 5
  depth, units = PAPER_SIZES[size][3:]
  assert agent.decoder.depth == depth
  for module in (agent.critic, agent.reward_head, agent.continue_head):
    assert module.units == units
  assert agent.encoder.mlp_units == units and agent.decoder.mlp_units == units
  assert config.size == size


def test_v3_defaults():
  config = parse('--env', 'gym_CartPole-v1')
  agent = config.agent
  assert config.algo == 'dreamerv3' and config.size == 'size1m'  # --size auto on a CPU
  assert (config.run.batch_size, config.run.batch_length) == (16, 64)
  assert agent.rssm.unimix == 0.01 and agent.actor.unimix == 0.01
  assert (agent.kl.mode, agent.kl.free, agent.kl.dyn_scale, agent.kl.rep_scale) == (
      'split', 1.0, 1.0, 0.1)
  assert (agent.imag_horizon, agent.horizon, agent.lam) == (15, 333.0, 0.95)
  assert (agent.actor.min_std, agent.actor.max_std, agent.actor.entropy) == (0.1, 1.0, 3e-4)
  assert (agent.critic.slow_rate, agent.repval_scale) == (0.02, 0.3)
  assert (agent.retnorm.low, agent.retnorm.high, agent.retnorm.rate, agent.retnorm.limit) == (
      5.0, 95.0, 0.01, 1.0)
  opt = agent.opt
  assert (opt.kind, opt.lr, opt.eps, opt.agc, opt.warmup, opt.momentum) == (
      'dreamerv3', 4e-5, 1e-20, 0.3, 1000, 0.9)
  assert agent.reward_head.bins == 255 and agent.reward_head.outscale == 0.0
  assert agent.encoder.act == 'silu' and agent.encoder.norm == 'rms'
  # The reference code's schedule and replay (danijar/dreamerv3 f8817c4): zero initial state,
  # replay context 1 with the online queue, no random prefill, training from B * T starts
  # with one update, eval actions sampled.
  assert agent.rssm.initial == 'zeros' and agent.replay_context == 1 and config.replay.online
  assert (config.run.prefill, config.run.pretrain, config.run.train_starts) == (0, 1, 1024)
  assert agent.actor.eval_sample


@pytest.mark.parametrize('backend, env, size', [
    ('cpu', 'atari_pong', 'size1m'), ('cpu', 'dmc_walker_walk', 'size1m'),
    ('gpu', 'atari_pong', 'size200m'), ('tpu', 'crafter_reward', 'size200m'),
    ('gpu', 'dmc_walker_walk', 'size12m')])
def test_size_auto_picks_by_backend(monkeypatch, backend, env, size):
  # The paper's size on an accelerator (DMC: size12m, 2411f7d), size1m on a CPU.
  import jax  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  assert parse('--env', env).size == size
  assert parse('--env', env, '--size', 'auto').size == size
  assert parse('--env', env, '--size', 'size25m').size == 'size25m'  # --size wins


def test_size_auto_keeps_v1_v2_paper_sizes():
  for algo in ('dreamerv1', 'dreamerv2'):
    assert parse('--config', algo, '--env', 'atari_pong') == parse(
        '--config', algo, '--env', 'atari_pong', '--size', 'auto')


@pytest.mark.parametrize('env, suite, ratio', [
    ('atari_pong', 'atari', 32.0), ('atari100k_pong', 'atari100k', 256.0),
    ('dmc_walker_walk', 'dmc_vision', 512.0), ('crafter_reward', 'crafter', 512.0),
    ('craftax_classic', 'craftax', 512.0), ('gym_CartPole-v1', 'gym', 512.0)])
def test_suite_for_env(env, suite, ratio):
  config = parse('--env', env)
  assert config.suite == suite
  assert config.run.train_ratio == ratio


def test_suite_presets():
  # The configurations behind the published score files (danijar/dreamerv3 2411f7d).
  atari = parse('--env', 'atari_pong')
  assert atari.env.size == (96, 96) and atari.env.gray
  assert (atari.env.noops, atari.env.actions, atari.env.sticky) == (0, 'all', True)
  # Atari 200M episodes end at 108,000 frames (embodied/envs/atari.py `length`, both commits):
  # ALE's frame limit, with no agent-step limit to cut them sooner (25,000 steps is 100k's).
  assert atari.env.time_limit == 0 and atari_env.MAX_FRAMES == 108_000
  a100k = parse('--env', 'atari100k_pong')
  assert a100k.run.envs == 1 and a100k.run.steps == 110_000
  assert (a100k.env.noops, a100k.env.actions, a100k.env.sticky) == (0, 'all', False)
  assert a100k.env.time_limit * a100k.env.action_repeat == 100_000   # 2411f7d `length`
  for suite in ('dmc_proprio', 'dmc_vision'):
    dmc = parse('--env', 'dmc_walker_walk', '--suite', suite, '--size', 'size12m')
    assert (dmc.size, dmc.run.train_ratio, dmc.env.action_repeat) == ('size12m', 512.0, 2)
    assert dmc.agent.rssm.deter == 2048 and dmc.env.pixels == (suite == 'dmc_vision')
  # An explicit --size wins (the suite's accelerator size: test_size_auto_picks_by_backend).
  assert parse('--env', 'dmc_walker_walk', '--suite', 'dmc_proprio',
               '--size', 'size1m').agent.rssm.deter == 512
  assert parse('--env', 'crafter_reward').run.envs == 1
  assert parse('--env', 'minecraft_diamond').run.train_ratio == 32.0


def test_debug_is_tiny_and_overridable():
  config = parse('--env', 'gym_CartPole-v1', '--size', 'debug', '--set', 'agent.lam=0.9')
  assert (config.agent.rssm.deter, config.agent.rssm.hidden, config.agent.rssm.stoch,
          config.agent.rssm.classes, config.agent.encoder.depth) == (64, 32, 4, 4, 4)
  assert (config.run.batch_size, config.run.batch_length) == (4, 16)
  assert config.agent.lam == 0.9


def test_bad_input_is_one_line(capsys):
  with pytest.raises(SystemExit) as info:
    parse('--env', 'nosuchsuite_task')
  assert info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'nosuchsuite_task' in err
  with pytest.raises(SystemExit):
    parse('--env', 'gym_CartPole-v1', '--set', 'agent.rssm.blocks=7')
  assert 'blocks' in capsys.readouterr().err
  for key in ('agent.encoder.conv_grad', 'agent.decoder.upsample', 'agent.encoder.downsample',
              'agent.actor.continuous_dist', 'agent.actor.grad_continuous'):
    with pytest.raises(SystemExit) as info:
      parse('--env', 'crafter_reward', '--set', f'{key}=bogus')
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and key in err, err


@pytest.mark.parametrize('suite', ['atari100k', 'dmc_proprio', 'dmc_vision'])
def test_v3_preset_budget_matches_the_benchmark_suite(suite):
  # experiments/suites.py counts budgets in env frames, like the published curves' x-axes;
  # run.steps counts agent steps, so the two must agree through the action repeat.
  from experiments import suites  # pylint: disable=g-import-not-at-top
  bench = suites.SUITES[suite]
  env = bench.env_name(bench.tasks[0])
  config = parse('--config', 'dreamerv3', '--env', env, '--suite', suite)
  assert config.env.action_repeat == bench.protocol.action_repeat
  if suite == 'atari100k':  # the reference runs 110k agent steps for the 100k benchmark
    assert config.run.steps == 110_000 and bench.steps == 100_000
  else:
    assert config.run.steps == bench.steps


def test_unusable_run_directories_are_one_line(tmp_path, capsys):
  from dreamer import main as dreamer_main  # pylint: disable=g-import-not-at-top
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  empty = tmp_path / 'empty_run'
  cases = [
      (['--logdir', str(blocker / 'run')], '--logdir'),   # a file where a directory must go
      (['--logdir', str(empty), '--eval_only'], '--eval_only'),
      (['--logdir', str(tmp_path / 'x'), '--eval_only', '--from_checkpoint', str(empty)],
       '--eval_only'),
  ]
  for extra, flag in cases:
    with pytest.raises(SystemExit) as info:
      dreamer_main.main(['--env', 'gym_CartPole-v1', '--size', 'debug'] + extra)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and flag in err, err
  assert not empty.exists()   # a failed --eval_only creates no run directory

"""Data parallel over devices and hosts (common/run/devices.py), on virtual CPU devices.

The multi-device checks run in subprocesses: the device count
(XLA_FLAGS=--xla_force_host_platform_device_count) is fixed when JAX starts.
"""
import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
CHECK = os.path.join(ROOT, 'tests', 'common', 'run', 'sharded_check.py')


def _env(devices):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return env


def _free_port():
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    return sock.getsockname()[1]


def test_sharded_step_equals_single_device_step():
  out = subprocess.run([sys.executable, CHECK, 'step'], env=_env(4), capture_output=True,
                       text=True, timeout=600, check=True).stdout
  result = json.loads(out.strip().splitlines()[-1])
  assert result['devices'] == 4 and result['batch_shards'] == 4
  assert result['param_spec'] in ('P()', 'PartitionSpec()')   # parameters replicated
  single, sharded = result['loss']
  assert abs(single - sharded) <= 1e-5 * abs(single)
  assert result['max_param_diff'] <= 1e-5 * result['param_scale']


def test_world_models_vae_and_mdnrnn_steps_split_over_four_devices_equal_one():
  out = subprocess.run([sys.executable, CHECK, 'world_models'], env=_env(4), capture_output=True,
                       text=True, timeout=600, check=True).stdout
  result = json.loads(out.strip().splitlines()[-1])
  assert result['devices'] == 4
  for name in ('vae', 'mdnrnn'):
    single, sharded = result[name]['loss']
    assert result[name]['batch_shards'] == 4
    assert abs(single - sharded) <= 1e-5 * abs(single), name
    assert result[name]['max_param_diff'] <= 1e-5 * result[name]['param_scale'], name


def _two_processes(mode, logdir):
  """Runs `sharded_check.py MODE PROCESS PORT LOGDIR` as processes 0 and 1 of one
  jax.distributed run (2 virtual CPU devices each); returns their last JSON lines."""
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, CHECK, mode, str(i), str(port), str(logdir)],
                            env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT) for i in range(2)]
  results = []
  for proc in procs:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    results.append(json.loads(out.strip().splitlines()[-1]))
  return results


def test_two_process_distributed_run_takes_steps_and_runs_the_train_loop(tmp_path):
  results = _two_processes('distributed', tmp_path)
  for process, result in enumerate(results):
    assert result['process'] == process and result['processes'] == 2
    assert result['devices'] == 4 and result['calls'] == 3
    # One global step over both halves: the loss of the whole batch in one process.
    assert abs(result['loss'] - result['alone_loss']) <= 1e-5 * abs(result['alone_loss'])
  assert results[0]['loss'] == results[1]['loss']
  # The train loop: process 1's SIGTERM stopped both hosts at the same step, each saved, and
  # the same command resumed both to the end, although each host's clocks fired at its own
  # times (only process 0's decide). The updates are the exact train-ratio count (local batch
  # 4 x 8 steps, ratio 8) from where training started: the first exchange between the hosts
  # (every host_sync.EVERY = 10 iterations of 2 agent steps) after the 50 prefill steps.
  interrupted, resumed = results[0]['runs']
  assert results[1]['runs'] == results[0]['runs']
  assert interrupted['interrupted'] and 50 < interrupted['step'] < 300
  assert resumed['start_step'] == interrupted['step'] and resumed['step'] == 300
  assert not resumed['interrupted']
  starts = [start for start in range(50, 71)
            if interrupted['updates'] == (interrupted['step'] - start) * 8 // 32
            and resumed['updates'] == (300 - start) * 8 // 32]
  assert starts, (interrupted, resumed)
  for result in results:
    assert result['disagreement'].startswith('The hosts are at different agent steps [100, 101]')
  # One run directory: process 0's logs and the shared checkpoints; process 1 logs apart.
  assert (tmp_path / 'config.yaml').exists() and (tmp_path / 'scores.jsonl').exists()
  assert (tmp_path / 'hosts' / '1' / 'scores.jsonl').exists()
  assert not (tmp_path / 'hosts' / '1' / 'config.yaml').exists()
  assert (tmp_path / 'checkpoints' / '300').is_dir()


@pytest.mark.slow   # about a minute: the debug VAE compiles slowly over two processes
def test_two_process_world_models_vae_and_mdnrnn_stages(tmp_path):
  results = _two_processes('distributed_world_models', tmp_path)
  # Both hosts took every step (4 VAE steps: 3 episodes x 12 frames / batch 8; 3 MDN-RNN
  # steps) together and wrote one set of checkpoints.
  assert results[0] == results[1] == {'vae': [4], 'mdnrnn': [2, 3]}


def test_loop_trains_on_four_devices_and_acts_on_another():
  proc = subprocess.run([sys.executable, CHECK, 'loop'], env=_env(4), capture_output=True,
                        text=True, timeout=600, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert 'training on 4 cpu device(s) (data parallel), acting on 1' in proc.stdout
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['step'] == 200 and result['updates'] == 37   # (200 - 50) * 8 / (4 * 8): exact


@pytest.mark.parametrize('setting, message', [
    ('run.train_devices=0,7', 'run.train_devices=(0, 7): this host has 1 devices'),
    ('run.policy_devices=3', 'run.policy_devices=(3,): this host has 1 devices'),
    ('run.processes=2', 'run.processes=2 needs run.coordinator=HOST:PORT')])
def test_bad_device_settings_are_one_line_exit_2(tmp_path, capsys, monkeypatch, setting, message):
  from dreamer import main as dreamer_main  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv('JAX_COORDINATOR_ADDRESS', raising=False)
  with pytest.raises(SystemExit) as exit_info:
    dreamer_main.main(['--env', 'gym_CartPole-v1', '--size', 'debug',
                       '--logdir', str(tmp_path / 'r'), '--set', setting])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and message in err

"""experiments/fetch_wheels.py: repacking a wheel without unused assets."""
import zipfile

from experiments import fetch_wheels


def test_repack_drops_folders_and_their_record_lines(tmp_path):
  path = tmp_path / 'dm_control-1.0-py3-none-any.whl'
  record = ('dm_control/suite/cartpole.py,sha256=a,10\n'
            'dm_control/locomotion/soccer/ball.xml,sha256=b,2000\n'
            'dm_control-1.0.dist-info/RECORD,,\n')
  with zipfile.ZipFile(path, 'w') as wheel:
    wheel.writestr('dm_control/suite/cartpole.py', 'x = 1\n')
    wheel.writestr('dm_control/locomotion/soccer/ball.xml', 'b' * 2000)
    wheel.writestr('dm_control-1.0.dist-info/RECORD', record)
  saved = fetch_wheels.repack_without(str(path), fetch_wheels.DM_CONTROL_DROP)
  assert saved > 0
  with zipfile.ZipFile(path) as wheel:
    assert wheel.namelist() == ['dm_control/suite/cartpole.py', 'dm_control-1.0.dist-info/RECORD']
    assert 'locomotion' not in wheel.read('dm_control-1.0.dist-info/RECORD').decode()
    assert wheel.read('dm_control/suite/cartpole.py') == b'x = 1\n'


def test_the_wheels_name_one_version_each():
  names = [spec.split('==')[0].lower().replace('_', '-') for spec in fetch_wheels.WHEELS]
  assert len(names) == len(set(names)) and all('==' in spec for spec in fetch_wheels.WHEELS)

"""Logger: metrics.jsonl, scores.jsonl, console progress, TensorBoard events."""
import io
import json
import os

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from common.run.logging import Logger


def test_logger_files_console_and_tensorboard(tmp_path):
  console = io.StringIO()
  logger = Logger(tmp_path, total_steps=1000, stream=console, verbose=True)
  logger.add({'loss': 1.0, 'entropy': np.float32(0.5)}, prefix='train')
  logger.add({'loss': 3.0}, prefix='train')
  logger.add({'openloop': np.zeros((5, 8, 8, 3), np.uint8),
              'recon': np.ones((8, 8, 1), np.float32) * 0.5})
  logger.episode(100, score=2.5, length=40, achievement_x=1)
  logger.write(100)
  logger.add({'train/loss': 5.0})
  logger.write(300)
  logger.close()

  lines = [json.loads(x) for x in open(tmp_path / 'metrics.jsonl')]
  assert lines[0]['step'] == 100 and lines[0]['train/loss'] == 2.0  # mean of 1 and 3
  assert lines[0]['episode/score'] == 2.5 and lines[0]['train/entropy'] == 0.5
  assert lines[1]['train/loss'] == 5.0 and 'run/steps_per_second' in lines[1]
  scores = [json.loads(x) for x in open(tmp_path / 'scores.jsonl')]
  assert scores == [{'step': 100, 'score': 2.5, 'length': 40, 'achievement_x': 1}]
  text = console.getvalue()
  assert 'train/loss 2' in text and 'steps/s' in text and 'ETA' in text and '300/1,000' in text
  assert '? steps/s' in text.splitlines()[1] and 'nan' not in text  # no speed before a second line

  events = [f for f in os.listdir(tmp_path) if f.startswith('events')]
  assert events
  values = [v for event in _read_events(tmp_path / events[0]) for v in event.summary.value]
  assert [v.simple_value for v in values if v.tag == 'train/loss'] == [2.0, 5.0]
  images = {v.tag: v.image for v in values if v.HasField('image')}
  assert set(images) == {'openloop', 'recon'}
  assert images['openloop'].encoded_image_string[:3] == b'GIF'
  assert images['recon'].encoded_image_string[:4] == b'\x89PNG'


def test_console_short_line_by_default(tmp_path, monkeypatch):
  clock = iter([100.0, 100.0, 110.0, 110.0])
  monkeypatch.setattr('common.run.logging.time.time', lambda: next(clock))
  console = io.StringIO()
  logger = Logger(tmp_path, total_steps=1000, tensorboard=False, stream=console)
  metrics = {'loss': 9.0, 'model_loss': 5.0, 'policy_loss': -0.5, 'value_loss': 2.0,
             'kl': 1.0, 'post_entropy': 3.0, 'grad_norm_actor': 7.0}
  logger.add(metrics, prefix='train')
  logger.add({'model_loss': 4.0}, prefix='report')  # a report's loss is not a main loss
  logger.add({'updates': 10}, prefix='run')
  logger.episode(100, score=21.5, length=40)
  logger.write(100)
  logger.add(metrics, prefix='train')
  logger.add({'updates': 30}, prefix='run')
  logger.write(300)
  logger.close()
  first, second = console.getvalue().splitlines()
  assert first == ('[100/1,000 10.0%] return 21.5 | loss 9 model_loss 5 policy_loss -0.5 '
                   'value_loss 2 | ? env steps/s | ETA ?')
  # 200 steps and 20 updates in the 10 s between the writes.
  assert second == ('[300/1,000 30.0%] loss 9 model_loss 5 policy_loss -0.5 value_loss 2 | '
                    '2 updates/s | 20.0 env steps/s | ETA 0m35s')
  lines = [json.loads(x) for x in open(tmp_path / 'metrics.jsonl')]
  assert lines[0]['train/kl'] == 1.0 and lines[0]['report/model_loss'] == 4.0  # all kept there


def _read_events(path):
  """TFRecord framing: u64 length, u32 crc, payload, u32 crc."""
  data = open(path, 'rb').read()
  position, events = 0, []
  while position < len(data):
    length = int.from_bytes(data[position:position + 8], 'little')
    payload = data[position + 12:position + 12 + length]
    position += 12 + length + 4
    event = event_pb2.Event()
    event.ParseFromString(payload)
    events.append(event)
  return events


def test_logger_bad_metric(tmp_path):
  logger = Logger(tmp_path, tensorboard=False, stream=io.StringIO())
  with pytest.raises(ValueError, match="metric 'x'"):
    logger.add({'x': np.zeros(3)})
  logger.close()


def test_episode_keeps_labels_in_jsonl_and_averages_only_numbers(tmp_path):
  logger = Logger(str(tmp_path), tensorboard=False, stream=io.StringIO())
  logger.episode(10, 1.5, 7, stage='collect', achievements=3)
  logger.close()
  record = json.loads((tmp_path / 'scores.jsonl').read_text().strip())
  assert record == {'step': 10, 'score': 1.5, 'length': 7, 'stage': 'collect', 'achievements': 3}


def test_forget_after_drops_the_lines_a_resume_runs_again(tmp_path):
  logger = Logger(tmp_path, total_steps=10, tensorboard=False, stream=io.StringIO())
  for step in (2, 4, 6):
    logger.episode(step, score=step, length=1)
    logger.episode(step, score=-step, length=1, mode='eval')
    logger.scalar('x', 1.0)
    logger.write(step)
  logger.forget_after(4)
  logger.episode(5, score=5, length=1)   # the resumed run goes on appending
  logger.write(5)
  logger.close()
  read = lambda name: [json.loads(line)['step'] for line in open(tmp_path / name)]
  assert read('scores.jsonl') == [2, 4, 5]
  assert read('eval_scores.jsonl') == [2, 4]
  assert read('metrics.jsonl') == [2, 4, 5]

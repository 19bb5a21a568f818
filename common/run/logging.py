"""Run logging: console lines with progress, metrics.jsonl, scores.jsonl, TensorBoard.

What DreamerV3's training loop writes, in one place:
  * `add(metrics, prefix)` accumulates values between writes: scalars are
    averaged, images (`[H, W, C]`) and videos (`[T, H, W, C]`, uint8 or floats
    in [0, 1]) keep their latest value.
  * `write(step)` prints one short line (step, episode return, the main losses,
    updates/s, agent steps/s, ETA; with `verbose`, every metric and a progress
    line instead), appends one JSON line of every metric to `metrics.jsonl` and
    writes TensorBoard scalars, images and videos (animated GIFs, no moviepy
    needed).
  * `episode(step, score, length, mode, **stats)` appends one line to
    `scores.jsonl` (training episodes) or `eval_scores.jsonl` (evaluation).
"""
import collections
import io
import json
import math
import os
import sys
import time

import numpy as np


def _format_duration(seconds):
  if not math.isfinite(seconds) or seconds < 0:
    return '?'
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{seconds:02d}s'


# The short console line shows these where a run logs them; everything is in metrics.jsonl.
_RETURNS = (('return', 'episode/score'), ('eval return', 'eval_episode/score'))
_MAIN_LOSSES = ('loss', 'model_loss', 'policy_loss', 'value_loss')


def _is_main_loss(name):
  return name.rsplit('/', 1)[-1] in _MAIN_LOSSES and not name.startswith('report/')


def _to_uint8(array):
  array = np.asarray(array)
  if array.dtype != np.uint8:
    array = np.clip(np.nan_to_num(array.astype(np.float32)) * 255, 0, 255).astype(np.uint8)
  if array.shape[-1] == 1:
    array = np.repeat(array, 3, axis=-1)
  return array


class Logger:
  """Logs to the console, `metrics.jsonl`, `scores.jsonl` and TensorBoard in `logdir`.

  Args:
    logdir: run directory (created if needed).
    total_steps: the run's step budget, for the progress line's percentage and ETA.
    tensorboard: write TensorBoard events (tensorboardX).
    stream: where console lines go (default stdout).
    verbose: print every metric on the console (`--verbose`), not the short line.
  """

  def __init__(self, logdir, total_steps=0, tensorboard=True, stream=None, verbose=False):
    self.logdir = os.fspath(logdir)
    os.makedirs(self.logdir, exist_ok=True)
    self.total_steps = int(total_steps)
    self._stream = stream or sys.stdout
    self._scalars = collections.defaultdict(list)
    self._media = {}
    self._metrics_file = open(os.path.join(self.logdir, 'metrics.jsonl'), 'a')
    self._scores_file = open(os.path.join(self.logdir, 'scores.jsonl'), 'a')
    self._eval_scores_file = None
    self._writer = None
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      self._writer = tensorboardX.SummaryWriter(self.logdir, flush_secs=30)
    self.verbose = verbose
    self._last_time = None
    self._last_step = None
    self._speed = float('nan')
    self._last_updates = None   # (time, run/updates) at the last write that logged updates

  # --- collecting ---------------------------------------------------------------

  def add(self, metrics, prefix=''):
    """Accumulates a dict of scalars (averaged at `write`), images and videos."""
    for name, value in metrics.items():
      name = f'{prefix}/{name}' if prefix else name
      array = np.asarray(value)
      if array.ndim == 0:
        self._scalars[name].append(float(array))
      elif array.ndim in (3, 4):
        self._media[name] = array
      else:
        raise ValueError(f'metric {name!r}: shape {array.shape}; expected a scalar, an image '
                         f'[H, W, C] or a video [T, H, W, C].')

  def scalar(self, name, value):
    self._scalars[name].append(float(value))

  # --- writing ------------------------------------------------------------------

  def progress(self, step):
    """Updates and returns the progress text: steps, steps/s, ETA."""
    now = time.time()
    if self._last_time is not None and now > self._last_time and step > self._last_step:
      self._speed = (step - self._last_step) / (now - self._last_time)
    if self._last_time is None or step != self._last_step:
      self._last_time, self._last_step = now, step
    text = f'step {step:,}'
    speed, eta = self._speed_texts(step)
    if self.total_steps:
      fraction = min(1.0, step / self.total_steps)
      filled = int(20 * fraction)
      text += f'/{self.total_steps:,} [{"#" * filled}{"." * (20 - filled)}] {100 * fraction:5.1f}%'
      return text + f' | {speed} steps/s | ETA {eta}'
    return text + f' | {speed} steps/s'

  def _speed_texts(self, step):
    """(steps/s, ETA) as text from the last measured speed; the first line has no earlier one
    to measure from ('?'). ETA is None without a step budget."""
    speed = f'{self._speed:,.1f}' if math.isfinite(self._speed) else '?'
    if not self.total_steps:
      return speed, None
    eta = (self.total_steps - step) / self._speed if self._speed > 0 else float('nan')
    return speed, _format_duration(eta)

  def write(self, step, fps=True):
    """Writes the accumulated metrics at `step` everywhere and clears them."""
    step = int(step)
    scalars = {name: float(np.mean(values)) for name, values in self._scalars.items()}
    if fps:
      progress = self.progress(step)
      if math.isfinite(self._speed):
        scalars['run/steps_per_second'] = self._speed
    else:
      progress = f'step {step:,}'
    if scalars:
      record = {'step': step, **{k: (v if math.isfinite(v) else str(v))
                                 for k, v in scalars.items()}}
      self._metrics_file.write(json.dumps(record) + '\n')
      self._metrics_file.flush()
    if self.verbose:
      if scalars:
        items = ' | '.join(f'{name} {value:.4g}' for name, value in sorted(scalars.items()))
        print(f'[{step:,}] {items}', file=self._stream)
      print(progress, file=self._stream)
    else:
      print(self._short_line(step, scalars, fps), file=self._stream)
    self._stream.flush()
    if self._writer is not None:
      for name, value in scalars.items():
        self._writer.add_scalar(name, value, step)
      for name, value in self._media.items():
        if value.ndim == 3:
          self._writer.add_image(name, _to_uint8(value), step, dataformats='HWC')
        else:
          self._add_gif(name, _to_uint8(value), step)
      self._writer.flush()
    self._scalars.clear()
    self._media.clear()

  def _short_line(self, step, scalars, fps):
    """One line a person reads at a glance: step, returns, main losses, rates, ETA."""
    where = f'{step:,}'
    if self.total_steps:
      where += f'/{self.total_steps:,} {100 * min(1.0, step / self.total_steps):.1f}%'
    parts = [f'{label} {scalars[name]:.4g}' for label, name in _RETURNS if name in scalars]
    losses = [f'{name.removeprefix("train/")} {value:.3g}'
              for name, value in sorted(scalars.items()) if _is_main_loss(name)]
    if losses:
      parts.append(' '.join(losses))
    if fps:
      now, updates = time.time(), scalars.get('run/updates')
      if updates is not None:
        if self._last_updates is not None and now > self._last_updates[0]:
          rate = (updates - self._last_updates[1]) / (now - self._last_updates[0])
          parts.append(f'{rate:.3g} updates/s')
        self._last_updates = (now, updates)
      speed, eta = self._speed_texts(step)
      parts.append(f'{speed} env steps/s')
      if eta is not None:
        parts.append(f'ETA {eta}')
    return f'[{where}] {" | ".join(parts)}'.rstrip()

  def _add_gif(self, name, video, step, fps=10):
    """A `[T, H, W, C]` uint8 video as an animated GIF in TensorBoard's image tab."""
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    frames = [Image.fromarray(frame) for frame in video]
    buffer = io.BytesIO()
    frames[0].save(buffer, format='GIF', save_all=True, append_images=frames[1:],
                   duration=int(1000 / fps), loop=0)
    image = summary_pb2.Summary.Image(height=video.shape[1], width=video.shape[2],
                                      colorspace=video.shape[3],
                                      encoded_image_string=buffer.getvalue())
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=name, image=image)])
    self._writer._get_file_writer().add_summary(summary, step)  # pylint: disable=protected-access

  def episode(self, step, score, length, mode='train', **stats):
    """One finished episode: a line in `scores.jsonl` (mode 'train') or
    `eval_scores.jsonl` (mode 'eval'), averaged into `episode/*` or `eval_episode/*`."""
    record = {'step': int(step), 'score': float(score), 'length': int(length)}
    for key, value in stats.items():
      value = np.asarray(value)
      record[key] = value.item() if value.ndim == 0 else value.tolist()
    if mode == 'train':
      file, prefix = self._scores_file, 'episode'
    elif mode == 'eval':
      if self._eval_scores_file is None:
        self._eval_scores_file = open(os.path.join(self.logdir, 'eval_scores.jsonl'), 'a')
      file, prefix = self._eval_scores_file, 'eval_episode'
    else:
      raise ValueError(f"mode={mode!r}: expected 'train' or 'eval'.")
    file.write(json.dumps(record) + '\n')
    file.flush()
    self._scalars[f'{prefix}/score'].append(float(score))
    self._scalars[f'{prefix}/length'].append(float(length))
    for key, value in stats.items():
      # Numeric scalars are averaged; labels (e.g. a stage name) stay in the jsonl line only.
      if np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number):
        self._scalars[f'{prefix}/{key}'].append(float(value))

  def forget_after(self, step):
    """Drops the lines of `metrics.jsonl`, `scores.jsonl` and `eval_scores.jsonl` logged after
    `step`: on a resume from the checkpoint at `step`, those steps are run again, and a killed
    run's lines for them would otherwise stay beside the new ones."""
    handles = {'metrics.jsonl': '_metrics_file', 'scores.jsonl': '_scores_file',
               'eval_scores.jsonl': '_eval_scores_file'}
    for name, attribute in handles.items():
      path = os.path.join(self.logdir, name)
      if not os.path.exists(path):
        continue
      handle = getattr(self, attribute)   # eval_scores.jsonl opens on its first line
      if handle is not None:
        handle.close()
      with open(path) as file:
        kept = [line for line in file if line.strip() and json.loads(line)['step'] <= step]
      temporary = f'{path}.tmp{os.getpid()}'
      with open(temporary, 'w') as file:
        file.writelines(kept)
      os.replace(temporary, path)
      if handle is not None:
        setattr(self, attribute, open(path, 'a'))

  def close(self):
    self._metrics_file.close()
    self._scores_file.close()
    if self._eval_scores_file is not None:
      self._eval_scores_file.close()
    if self._writer is not None:
      self._writer.close()

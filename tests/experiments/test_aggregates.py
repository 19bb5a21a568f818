"""Normalisation, final scores, binning and aggregates against hand-computed values."""
import math

import numpy as np
import pytest

from experiments import plot, suites


def test_human_normalisation(tmp_path):
  path = tmp_path / 'baselines.yaml'
  path.write_text('atari57_gamer:\n  atari_pong: [-20.7, 14.6]\n  atari_boxing: [0.1, 12.1]\n')
  baselines = plot.load_baselines(str(path), 'atari57_gamer')
  assert plot.normalise('atari_pong', 14.6, baselines) == pytest.approx(1.0)
  assert plot.normalise('atari_pong', -20.7, baselines) == pytest.approx(0.0)
  assert plot.normalise('atari_boxing', 6.1, baselines) == pytest.approx(0.5)
  with pytest.raises(plot.PlotError, match='atari_alien'):
    plot.normalise('atari_alien', 1.0, baselines)
  with pytest.raises(plot.PlotError, match='no section'):
    plot.load_baselines(str(path), 'dmlab30')


def test_aggregates_match_hand_values():
  # 4 seeds x 2 tasks.
  matrix = np.array([[0.0, 1.0],
                     [2.0, 3.0],
                     [4.0, 10.0],
                     [6.0, 100.0]])
  result = plot.aggregate(matrix, reps=200)
  assert result['mean'][0] == pytest.approx((0 + 2 + 4 + 6 + 1 + 3 + 10 + 100) / 8)
  # Median over tasks of the per-task means: tasks average 3 and 28.5.
  assert result['median'][0] == pytest.approx((3.0 + 28.5) / 2)
  # IQM: the 8 pooled scores sorted are 0 1 2 3 4 6 10 100; the middle half is 2 3 4 6.
  assert result['iqm'][0] == pytest.approx(3.75)
  for point, low, high in result.values():
    assert low - 1e-9 <= point <= high + 1e-9
  odd = plot.aggregate(np.array([[1.0, 2.0, 9.0]]), reps=10)
  assert odd['median'][0] == 2.0 and odd['mean'][0] == 4.0
  with pytest.raises(plot.PlotError, match='runs, tasks'):
    plot.aggregate(np.zeros(3))


def test_bootstrap_interval_of_constant_scores_is_a_point():
  result = plot.aggregate(np.full((3, 4), 0.7), reps=50)
  for point, low, high in result.values():
    assert (point, low, high) == pytest.approx((0.7, 0.7, 0.7))


def test_final_score_window_and_fallback():
  xs, ys = [100, 200, 300, 390, 400, 500], [1.0, 2.0, 3.0, 4.0, 5.0, 99.0]
  assert plot.final_score(xs, ys, window=20, end=400) == pytest.approx(4.5)
  assert plot.final_score(xs, ys, window=150, end=None) == pytest.approx(np.mean([4, 5, 99]))
  assert plot.final_score([100, 300], [1.0, 2.0], window=10, end=400) == 2.0  # last before end
  assert plot.final_score([100, 200], [1.0, None], window=500) == 1.0  # None dropped
  assert math.isnan(plot.final_score([500], [1.0], window=10, end=400))


def test_bin_curve_matches_a_loop():
  rng = np.random.default_rng(0)
  xs = np.sort(rng.uniform(0, 100, 40))
  ys = rng.normal(size=40)
  edges = np.linspace(0, 100, 11)
  expected = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    inside = [y for x, y in zip(xs, ys) if lo <= x < hi]
    expected.append(np.mean(inside) if inside else np.nan)
  np.testing.assert_allclose(plot.bin_curve(xs, ys, edges), expected)
  # Gaps are carried forward; before the first and after the last point is NaN.
  curve = plot.bin_curve([15, 55], [1.0, 3.0], edges)
  np.testing.assert_array_equal(np.isnan(curve), [1, 0, 0, 0, 0, 0, 1, 1, 1, 1])
  np.testing.assert_allclose(curve[1:6], [1, 1, 1, 1, 3])
  # Without carrying, the gaps stay empty.
  curve = plot.bin_curve([15, 55], [1.0, 3.0], edges, carry=False)
  np.testing.assert_array_equal(np.isnan(curve), [1, 0, 1, 1, 1, 0, 1, 1, 1, 1])


def test_band_mean_ignores_missing_seeds():
  curves = np.array([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
  mean, low, high = plot.band(curves, reps=100)
  np.testing.assert_allclose(mean, [2.0, 3.0, 5.0])
  assert np.all(low <= mean + 1e-9) and np.all(high >= mean - 1e-9)


def test_suites():
  assert len(suites.get('atari100k').tasks) == 26
  assert len(suites.get('atari57').tasks) == 57
  assert len(suites.get('dmc_vision').tasks) == 20
  assert suites.get('atari100k').steps == 100_000
  assert suites.get('atari100k').env_name('atari_pong') == 'atari100k_pong'
  assert suites.check_tasks(suites.get('atari100k'), ['atari100k_pong']) == ('atari_pong',)
  with pytest.raises(ValueError, match="did you mean 'dmc_proprio'"):
    suites.get('dmc_propio')
  with pytest.raises(ValueError, match='not a task of suite'):
    suites.check_tasks(suites.get('dmc_proprio'), ['dmc_quadruped_run'])
  # Crafter score: exp(mean(ln(1 + s))) - 1 by hand for s = [0, 3, 8] %.
  assert suites.crafter_score([0, 3, 8]) == pytest.approx((1 * 4 * 9) ** (1 / 3) - 1)

"""experiments.dreamer4_table: seed means and the Welch t against a hand computation."""
import json
import math

from experiments import dreamer4_table

DATASET = {'steps': 100, 'episodes': 10, 'return_mean': 0.3, 'return_std': 0.5,
           'return_first_quarter': 0.4, 'return_last_quarter': 0.2, 'return_max': 3.0}


def test_table_means_and_welch_t(tmp_path):
  scores = {'seed0': ([0.0, 1.0], [1.0, 3.0]), 'seed1': ([0.0, 0.0], [2.0, 2.0])}
  runs = []
  for name, (bc, agent) in scores.items():
    (tmp_path / name).mkdir()
    result = {'dataset': DATASET,
              'bc': {'mean': sum(bc) / 2, 'episodes': 2, 'scores': bc},
              'agent': {'mean': sum(agent) / 2, 'episodes': 2, 'scores': agent}}
    (tmp_path / name / 'eval.json').write_text(json.dumps(result))
    runs.append(str(tmp_path / name))
  text = dreamer4_table.table(runs)
  assert '| seed0 | 0.500 | 2.000 | 2 |' in text and '| seed1 | 0.000 | 2.000 | 2 |' in text
  assert '| 0.250 +- 0.250 | **2.000 +- 0.000** |' in text
  # Welch t by hand: agent [1, 3, 2, 2] (mean 2, var 2/3), bc [0, 1, 0, 0] (mean 1/4, var 1/4).
  t = (2 - 0.25) / math.sqrt((2 / 3) / 4 + 0.25 / 4)
  assert f'Welch t, agent vs BC over all episodes: {t:.2f}' in text
  assert '10 complete episodes, return 0.300 +- 0.500' in text

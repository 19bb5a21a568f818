"""The offline-vs-behaviour-cloning table of Dreamer 4 runs (`eval.json` of each seed's run).

    python -m experiments.dreamer4_table runs/dreamer4/breakout/seed0 .../seed1 .../seed2

Prints a Markdown table: the dataset's own statistics (complete episodes, mean return, its
first and last quarter in the order they were played), then per seed the behaviour-cloning
policy (phase 2) and the policy trained in imagination (phase 3) over their real-env episodes,
and the mean over seeds with the seeds' standard deviation and a Welch t of agent vs BC over
all episodes.
"""
import argparse
import json
import os

import numpy as np


def load(run: str) -> dict:
  path = os.path.join(run, 'eval.json')
  if not os.path.exists(path):
    raise SystemExit(f'dreamer4_table: error: {path} does not exist; run the evaluate stage.')
  with open(path) as file:
    return json.load(file)


def welch_t(a, b) -> float:
  a, b = np.asarray(a, float), np.asarray(b, float)
  scale = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
  return float((a.mean() - b.mean()) / scale) if scale > 0 else float('nan')


def table(runs) -> str:
  results = [load(run) for run in runs]
  data = results[0]['dataset']
  lines = [f"Dataset: {data['steps']} steps, {data['episodes']} complete episodes, return "
           f"{data['return_mean']:.3f} +- {data['return_std']:.3f} (first quarter "
           f"{data['return_first_quarter']:.3f}, last quarter {data['return_last_quarter']:.3f}, "
           f"best {data['return_max']:.0f}).", '',
           '| seed | BC (phase 2) | agent trained in imagination (phase 3) | episodes each |',
           '|---|---:|---:|---:|']
  for run, result in zip(runs, results):
    lines.append(f"| {os.path.basename(os.path.normpath(run))} | {result['bc']['mean']:.3f} | "
                 f"{result['agent']['mean']:.3f} | {result['agent']['episodes']} |")
  bc = [r['bc']['mean'] for r in results]
  agent = [r['agent']['mean'] for r in results]
  t = welch_t(sum((r['agent']['scores'] for r in results), []),
              sum((r['bc']['scores'] for r in results), []))
  lines.append(f'| mean +- std over seeds | {np.mean(bc):.3f} +- {np.std(bc):.3f} | '
               f'**{np.mean(agent):.3f} +- {np.std(agent):.3f}** | |')
  lines += ['', f'Welch t, agent vs BC over all episodes: {t:.2f}; dataset mean '
            f"{data['return_mean']:.3f}."]
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('runs', nargs='+', help='run directories holding eval.json')
  print(table(parser.parse_args(argv).runs))


if __name__ == '__main__':
  main()

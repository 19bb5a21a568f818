"""experiments/doom_setup.py on the real game, one short episode each."""
from experiments import doom_setup


def test_doom_setup_measures_random_policies_and_views():
  result = doom_setup.main(['--episodes', '2', '--view_episodes', '1'])
  assert set(result['random']) == {'skill_4_every_step', 'skill_4_held_1_to_10',
                                   'skill_5_every_step', 'skill_5_held_1_to_10'}
  for figures in result['random'].values():
    assert figures['episodes'] == 2 and 0 < figures['mean'] <= 2100
  views = result['views']
  assert len(views) == 6 and len({v['frames'] for v in views.values()}) == 1
  # Our crop is nearer the reference's frames than the whole screen without the bar.
  ours = views[f'status bar, rows 0:{doom_setup.rollouts.DOOM_VIEW_ROWS}']['mean']
  assert ours < views['no status bar, whole screen']['mean']

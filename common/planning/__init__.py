"""Planning inside a learned model.

  cem.py       PlaNet's cross-entropy method over action sequences
  planners.py  CEM, MPPI (TD-MPC2) and gradient planners with warm starts, and goal costs
  geometry.py  latent-path geometry: curvature, distance against steps, the straightening loss

May import: `common.nn` at most; a planner receives its model as functions.
"""

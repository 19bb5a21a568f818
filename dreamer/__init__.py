"""Dreamer V1, V2 and V3 as presets of one world model and one imagination actor-critic.

`--config dreamerv1|dreamerv2|dreamerv3` selects the preset (`dreamer/configs.py`); the
code paths below are switched by config fields, never copied:

  | config field                        | V1 (Dream to Control)     | V2 (Atari, discrete WM)         | V3 (Nature 2025)            |
  |-------------------------------------|---------------------------|---------------------------------|-----------------------------|
  | rssm (classes, deter, core)         | Gaussian 30, 200, GRU     | 32x32 categorical ST, 1024, LN-GRU (Atari 600, DMC 200) | 32 x classes unimix 1%, block GRU |
  | encoder/decoder CNN                 | depth 32, k4 VALID, ReLU  | depth 48, k4 VALID, ELU          | k5 SAME, RMSNorm, SiLU      |
  | MLPs (units, act, norm)             | 400, ELU, none            | 4 x 400, ELU, none               | size-dependent, SiLU, RMS   |
  | kl.mode (free nats, scale)          | plain (3, batch mean)     | balanced 0.8 (Atari 0 / DMC 1; 0.1 Atari) | split dyn 1 rep 0.1 (1 per step) |
  | decoder.image_dist / reward_head.dist | normal / normal (unit var) | normal / mse of tanh(r) (DMC r) | mse [0,1] / symexp two-hot  |
  | predict_continue, continue_scale    | off on DMC; elsewhere on, 10, target x discount | on, 5 on Atari (off on DMC), target x discount | on, 1, target x discount    |
  | imag_targets (return indexing)      | v1: from s_1, own reward  | v2: from s_0, own reward, first discount from replay | v3: R_t from r_{t+1}  |
  | model_first (update order)          | joint                     | world model first, then imagine  | joint (one optimizer)       |
  | horizon (gamma), lam, imag_horizon  | 100 (0.99), 0.95, 15      | 100 (0.99; Atari, Crafter 1000: 0.999), 0.95, 15 | 333 (0.997), 0.95, 15 |
  | actor.grad_discrete / grad_continuous | dynamics / dynamics     | reinforce / dynamics ('both' + grad_mix) | reinforce / reinforce |
  | actor.continuous_dist, entropy      | tanh_normal, 0            | trunc_normal, 2e-3 (Atari 1e-3, DMC 1e-4, Crafter 3e-3) | bounded_normal, 3e-4 |
  | actor.explore_noise                 | 0.3 (Gaussian; discrete: epsilon-greedy) | 0 (sampling)                     | 0 (sampling)                |
  | retnorm.kind                        | none                      | none                             | percentile 5-95 EMA         |
  | critic.dist, slow_target, slow_every/rate | normal, no, -       | mse, yes, 100 / 1.0              | two-hot, regulariser, 1 / 0.02 |
  | critic.replay_loss (repval)         | no                        | no                               | yes (0.3)                   |
  | single_optimizer, opt.kind          | no, adam eps 1e-7 clip 100 | no, adam eps 1e-5 clip 100, w *= 1 - 1e-6 | yes, dreamerv3 (AGC, LaProp) |
  | winit, rssm.core                    | glorot_uniform, keras_gru | glorot_uniform, gru (LN eps 1e-3) | trunc_normal fan-in, block_gru |
  | lr model / actor / critic           | 6e-4 / 8e-5 / 8e-5        | 1e-4/8e-5/2e-4 (Atari 2e-4/4e-5/1e-4, DMC 3e-4/8e-5/8e-5) | 4e-5 (one optimizer) |
  | run batch, train_ratio, prefill     | 50x50, 250 x repeat, 5000 env steps, pretrain 101 | 16x50, 50 Atari / 160, 50k Atari / 1k DMC / 10k, pretrain 2 (DMC 101) | 16x64, by suite, no prefill |
  | replay.sample, replay_context       | episodes, 0               | episodes + prioritize_ends (not DMC), 0 | windows + online queue, 1 |

Suite settings that differ by algorithm live in one function, `configs._algo_suite`.
Every remaining difference from each version's reference code is a row of FIDELITY.md.
"""

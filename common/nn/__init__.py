"""The primitives the papers define, as pure functions and Flax modules.

  math.py           symlog/symexp, two-hot encoding over symexp bins
  distributions.py  categorical (unimix, straight-through), normals, two-hot, MSE and symlog heads
  kl.py             KL terms: plain, balanced (V2), split dyn/rep with free nats (V3)
  returns.py        lambda-returns, the percentile return normaliser, EMA and slow targets
  nets.py, conv.py  MLPs, norms, GRU cells, CNN encoders/decoders, the CPU conv gradients
  rssm.py           the recurrent state-space model (observe, imagine)
  optim.py          optax chains: V3's AGC + RMS + momentum; Adam with V2's weight decay

May import: nothing else of `common` (only each other), so every primitive is usable and
testable on its own.
"""

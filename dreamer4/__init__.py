"""Dreamer 4 (Hafner, Yan and Lillicrap 2025, arXiv 2509.24527): an agent trained only inside a
world model learned from offline data.

  transformer.py  the space-time transformer (GQA, QK-norm, RoPE, SwiGLU, registers, masks, cache)
  tokenizer.py    the causal masked-autoencoder tokenizer (Sec. 3.1)
  shortcut.py     shortcut forcing: levels, targets, the bootstrap loss, the sampler (Sec. 3.2)
  dynamics.py     the interactive dynamics model with agent tokens, and the agent heads (Sec. 3.3)
  losses.py       MTP targets, PMPO, lambda-returns, RMS loss normalisation (Eq. 9-11)
  world_model.py  the tokenizer, dynamics and finetuning losses over batches
  imagine.py      frame-by-frame generation, imagination rollouts
  data.py         offline data from any replay directory the suite writes
  stages.py       the resumable training stages (Algorithm 1); evaluate.py the real-env agent
  main.py         `python -m dreamer4.main`
FIDELITY.md's Dreamer 4 section lists every paper value and our choices where it is silent.
"""

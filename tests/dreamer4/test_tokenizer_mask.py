"""The tokenizer's patches and masked-autoencoding mask (dreamer4/tokenizer.py, Sec. 3.1)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer4 import tokenizer


def _patchify_loop(frames, patch):
  """[..., H, W, C] -> [..., P, p*p*C]: zero-pad H, W up to p, row-major patches, each [p, p, C]."""
  *lead, height, width, channels = frames.shape
  rows, cols = -(-height // patch), -(-width // patch)
  padded = np.zeros(tuple(lead) + (rows * patch, cols * patch, channels), frames.dtype)
  padded[..., :height, :width, :] = frames
  out = np.zeros(tuple(lead) + (rows * cols, patch * patch * channels), frames.dtype)
  for r in range(rows):
    for c in range(cols):
      block = padded[..., r * patch:(r + 1) * patch, c * patch:(c + 1) * patch, :]
      out[..., r * cols + c, :] = block.reshape(tuple(lead) + (-1,))
  return out


@pytest.mark.parametrize('shape,patch', [((10, 10, 4), 2), ((10, 10, 2), 3), ((7, 5, 1), 4)])
def test_patchify_matches_a_loop_and_unpatchify_inverts_it(shape, patch):
  """patchify equals the loop (padding included); unpatchify(patchify(x)) == x."""
  frames = np.random.default_rng(0).normal(size=(2, 3) + shape).astype(np.float32)
  got = np.asarray(tokenizer.patchify(jnp.asarray(frames), patch))
  np.testing.assert_array_equal(got, _patchify_loop(frames, patch))
  back = tokenizer.unpatchify(jnp.asarray(got), patch, shape)
  np.testing.assert_array_equal(np.asarray(back), frames)


def test_mae_mask_drops_a_uniform_share_independently_per_patch():
  """Per-frame drop share ~ U(0, 0.9); within a frame patches drop independently (Bernoulli)."""
  frames, patches, top = 2000, 400, 0.9
  mask = np.asarray(tokenizer.mae_mask(jax.random.PRNGKey(0), (frames, patches), top))
  assert mask.dtype == bool and mask.shape == (frames, patches)
  share = mask.mean(1)
  # p ~ U(0, 0.9): mean 0.45 (sd of the mean ~0.006); the largest share is at most
  # 0.9 plus Bernoulli noise (sd sqrt(0.9 * 0.1 / 400) = 0.015).
  assert abs(share.mean() - top / 2) < 0.03
  assert share.max() <= top + 4 * np.sqrt(top * (1 - top) / patches)
  assert share.max() > 0.8 and share.min() < 0.05
  # The shares' CDF is that of U(0, 0.9), up to Bernoulli smoothing and sampling noise.
  grid = np.linspace(0.1, 0.8, 8)
  cdf = np.array([(share <= g).mean() for g in grid])
  np.testing.assert_allclose(cdf, grid / top, atol=0.05)
  # Independence within a frame: the two halves' shares differ by Bernoulli noise only,
  # var(s1 - s2) = 4 E[p (1 - p)] / P with E[p (1 - p)] = 0.45 - 0.27 = 0.18 for U(0, 0.9).
  half = patches // 2
  spread = np.var(mask[:, :half].mean(1) - mask[:, half:].mean(1))
  expected = 4 * 0.18 / patches
  assert abs(spread / expected - 1) < 0.2, (spread, expected)
  # Frames draw their own p: neighbouring frames' shares are uncorrelated.
  assert abs(np.corrcoef(share[:-1], share[1:])[0, 1]) < 0.1

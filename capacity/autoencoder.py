"""SegNet-style autoencoder in Flax (000, 5.3.1): VGG-mirrored conv blocks with batch norm, 2x2
max-pooling whose argmax positions drive the decoder's unpooling, ``out_channels`` outputs.

Widths and convs per block are arguments: ``widths=(64, 128, 256, 512, 512), convs=(2, 2, 3, 3, 3)``
is VGG16's layout (13 convs in the encoder, 13 in the decoder; 224x224x3 -> 7x7x512, about 6:1),
the default preset uses a narrow 3-block version on 32x32 digits.

Max-unpooling by indices has no native JAX op. Pooling windows are 2x2 with stride 2 (they do not
overlap), so the "indices" are kept as a one-hot mask over the 4 positions of each window and
unpooling is a broadcast multiply: no scatter, no gather, all elementwise and fusable. Ties go
to the first position in row-major order, as in torch's ``max_pool2d(return_indices=True)``; the
pooled value is taken through the mask, so its gradient also goes to that one position.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn


# --------------------------------------------------------------------------------------------------
# Pooling with indices / unpooling (NHWC)
# --------------------------------------------------------------------------------------------------
def max_pool_with_mask(x):
    """2x2/2 max-pooling of NHWC ``x``. Returns (pooled, mask), mask of shape (N, H/2, W/2, 4, C)
    one-hot over the window positions (dy*2+dx) in x's dtype."""
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"max_pool_with_mask needs even sides, got {h}x{w} (pad the input)")
    win = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4, c)
    idx = jnp.argmax(win, axis=3)                                    # first max, row-major
    mask = jax.nn.one_hot(idx, 4, axis=3, dtype=x.dtype)
    mask = jax.lax.stop_gradient(mask)
    pooled = jnp.sum(win * mask, axis=3)
    return pooled, mask


def max_unpool_with_mask(y, mask):
    """Inverse placement of ``max_pool_with_mask``: each value goes to its window's argmax, zeros
    elsewhere. ``y``: (N, h, w, C); returns (N, 2h, 2w, C)."""
    n, h, w, c = y.shape
    out = y[:, :, :, None, :] * mask.astype(y.dtype)                 # (N, h, w, 4, C)
    return out.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, c)


def mask_to_torch_indices(mask):
    """The flat H*W indices torch's max_pool2d would return (N, C, h, w), for tests."""
    n, h, w, _, c = mask.shape
    pos = jnp.argmax(mask, axis=3)                                    # (N, h, w, C)
    dy, dx = pos // 2, pos % 2
    rows = (2 * jnp.arange(h))[None, :, None, None] + dy
    cols = (2 * jnp.arange(w))[None, None, :, None] + dx
    return (rows * (2 * w) + cols).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------
class ConvBNReLU(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)(x)
        return nn.relu(x)


class Encoder(nn.Module):
    widths: Sequence[int]
    convs: Sequence[int]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        masks = []
        for w, k in zip(self.widths, self.convs):
            for _ in range(k):
                x = ConvBNReLU(w, self.dtype)(x, train)
            x, m = max_pool_with_mask(x)
            masks.append(m)
        return x, tuple(masks)


class Decoder(nn.Module):
    widths: Sequence[int]
    convs: Sequence[int]
    out_channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z, masks, train: bool = False):
        x = z
        for b in reversed(range(len(self.widths))):
            x = max_unpool_with_mask(x, masks[b])
            for i in range(self.convs[b]):
                last = i == self.convs[b] - 1
                if last and b == 0:      # output layer: plain conv to the image channels, sigmoid
                    x = nn.Conv(self.out_channels, (3, 3), padding=1, dtype=self.dtype)(x)
                else:
                    x = ConvBNReLU(self.widths[b - 1] if last else self.widths[b], self.dtype)(x, train)
        return nn.sigmoid(x.astype(jnp.float32))


class SegNet(nn.Module):
    """``apply(vars, x)`` with x in [0, 1], NHWC; returns the reconstruction in [0, 1]."""
    widths: Sequence[int] = (64, 128, 256, 512, 512)
    convs: Sequence[int] = (2, 2, 3, 3, 3)
    out_channels: int = 3
    dtype: Any = jnp.float32              # compute dtype (bfloat16 on GPU in the bench); params stay float32

    def setup(self):
        self.encoder = Encoder(tuple(self.widths), tuple(self.convs), self.dtype)
        self.decoder = Decoder(tuple(self.widths), tuple(self.convs), self.out_channels, self.dtype)

    def __call__(self, x, train: bool = False):
        z, masks = self.encoder(x, train)
        return self.decoder(z, masks, train)

    def encode(self, x, train: bool = False):
        return self.encoder(x, train)

    def decode(self, z, masks, train: bool = False):
        return self.decoder(z, masks, train)


def bottleneck_ratio(widths: Sequence[int], height: int, width: int, channels: int) -> float:
    """Input size over bottleneck size (values only; the pooling masks are not counted)."""
    k = 2 ** len(widths)
    return (height * width * channels) / ((height // k) * (width // k) * widths[-1])


def init_segnet(model: SegNet, key, image_shape: Sequence[int]):
    """Variables {'params', 'batch_stats'} for inputs of shape (H, W, C)."""
    shape = (1, *image_shape)
    return jax.jit(lambda k: model.init(k, jnp.zeros(shape, jnp.float32), train=False))(key)

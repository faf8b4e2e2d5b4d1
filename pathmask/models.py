"""The CNNs and convolutional VAEs of appendix C, in Flax (NHWC).

Layer for layer as the listings (torch names in comments). Two translations:
- torch ``BatchNorm(momentum=0.1, eps=1e-5)`` is Flax ``BatchNorm(momentum=0.9, epsilon=1e-5)``;
- torch ``ConvTranspose2d(k, s, padding=p)`` gives ``(in - 1) s - 2p + k``: Flax's ``ConvTranspose``
  with VALID padding gives ``(in - 1) s + k``, cropped here by ``p`` on each side.
The encoder's "std" head is a raw Linear layer in the listings (L2321); we read it as the
log-variance (exp of it is always a valid variance), the usual VAE parametrisation.
``train=False`` runs batch norm on its running statistics and dropout as the identity: every
per-sample optimisation uses that mode (inside a vmap, batch statistics would couple the samples).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# (features, kernel, stride, padding) per conv of the encoder / CNN trunk; "pool" = MaxPool2d(2)
CONVS = {
    "mnist": [(16, 5, 3, 2), (32, 3, 1, 0), (64, 3, 1, 0)],                                   # C.1, C.2
    "fashion_cnn": [(32, 3, 1, 1), (64, 3, 3, 1), (128, 3, 1, 0), (128, 3, 1, 0)],            # C.3
    "fashion_vae": [(32, 3, 1, 1), (64, 3, 3, 1), (128, 3, 1, 0), (128, 3, 1, 0), (256, 3, 1, 0)],  # C.4
    "cifar_cnn": [(64, 3, 1, 0), (64, 3, 1, 0), "pool", (128, 3, 1, 0), (128, 3, 1, 0), "pool",
                  (256, 3, 1, 0)],                                                             # C.5
    "cifar_vae": [(64, 3, 1, 0), (128, 3, 1, 0), "pool", (256, 3, 1, 0), (128, 3, 1, 0), (128, 5, 3, 2),
                  (256, 3, 1, 0)],                                                             # C.6
}
CNN_HIDDEN = {"mnist": (128,), "fashion": (128,), "cifar": (256, 128)}
# decoder: the code's reshape (H, W, C), then transposed convs (features, kernel, stride, padding);
# "up" = Upsample(scale_factor=2) (nearest); the last one is followed by BN + sigmoid
DECONVS = {
    "mnist": ((6, 6, 64), [(32, 3, 1, 0), (16, 3, 1, 0), (1, 5, 3, 2)]),
    "fashion": ((4, 4, 256), [(128, 3, 1, 0), (128, 3, 1, 0), (64, 3, 1, 0), (32, 3, 3, 1), (1, 3, 1, 1)]),
    "cifar": ((2, 2, 256), [(128, 3, 1, 0), (128, 5, 3, 2), (256, 3, 1, 0), (128, 3, 1, 0), "up",
                            (64, 3, 1, 0), (3, 3, 1, 0)]),
}
IMAGE_SHAPE = {"mnist": (28, 28, 1), "fashion": (28, 28, 1), "cifar": (32, 32, 3)}


def _bn(train: bool):
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


class ConvTrunk(nn.Module):
    """Conv (no bias) - BN - ReLU blocks, MaxPool2d(2) where listed, then Flatten."""
    convs: Sequence

    @nn.compact
    def __call__(self, x, train: bool):
        for c in self.convs:
            if c == "pool":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            f, k, s, p = c
            x = nn.Conv(f, (k, k), strides=(s, s), padding=[(p, p), (p, p)], use_bias=False)(x)
            x = nn.relu(_bn(train)(x))
        return x.reshape(x.shape[0], -1)


class CNN(nn.Module):
    """Listings C.1 (MNIST, NotMNIST), C.3 (FashionMNIST), C.5 (CIFAR10). Input in [0, 1], NHWC."""
    arch: str = "mnist"
    n_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        key = "mnist" if self.arch == "mnist" else f"{self.arch}_cnn"
        h = ConvTrunk(CONVS[key])(x, train)
        for width in CNN_HIDDEN[self.arch]:
            h = nn.Dense(width, use_bias=False)(h)
            h = nn.Dropout(0.5, deterministic=not train)(nn.relu(_bn(train)(h)))
        return nn.Dense(self.n_classes)(h)


class Decoder(nn.Module):
    arch: str = "mnist"

    @nn.compact
    def __call__(self, z, train: bool = False):
        shape, layers = DECONVS[self.arch]
        h = nn.Dense(shape[0] * shape[1] * shape[2])(z)
        h = nn.Dropout(0.5, deterministic=not train)(nn.relu(_bn(train)(h)))
        # torch reshapes (C, H, W); the order only names the units of a freshly trained layer
        h = h.reshape(h.shape[:-1] + tuple(shape))
        for i, layer in enumerate(layers):
            if layer == "up":
                h = jnp.repeat(jnp.repeat(h, 2, axis=-3), 2, axis=-2)
                continue
            f, k, s, p = layer
            h = nn.ConvTranspose(f, (k, k), strides=(s, s), padding="VALID", use_bias=False)(h)
            if p:
                h = h[..., p:-p, p:-p, :]
            h = _bn(train)(h)
            h = nn.sigmoid(h) if i == len(layers) - 1 else nn.relu(h)
        return h


class VAE(nn.Module):
    """Listings C.2 (MNIST, NotMNIST), C.4 (FashionMNIST), C.6 (CIFAR10): encoder trunk, Linear 128
    (no bias) - BN - ReLU - Dropout, heads mu and log-variance (latent 100), decoder."""
    arch: str = "mnist"
    latent: int = 100

    def setup(self):
        key = "mnist" if self.arch == "mnist" else f"{self.arch}_vae"
        self.trunk = ConvTrunk(CONVS[key])
        self.hidden = nn.Dense(128, use_bias=False)
        self.hidden_bn = nn.BatchNorm(momentum=0.9, epsilon=1e-5)
        self.dropout = nn.Dropout(0.5)
        self.mu = nn.Dense(self.latent)
        self.logvar = nn.Dense(self.latent)
        self.decoder = Decoder(self.arch)

    def encode(self, x, train: bool = False):
        h = self.hidden(self.trunk(x, train))
        h = self.dropout(nn.relu(self.hidden_bn(h, use_running_average=not train)), deterministic=not train)
        return self.mu(h), self.logvar(h)

    def decode(self, z, train: bool = False):
        return self.decoder(z, train)

    def __call__(self, x, eps, train: bool = False):
        """Reconstruction of ``x`` through z = mu + exp(logvar / 2) * eps (``eps`` ~ N(0, I) given
        by the caller; zeros decode the mean), and (mu, logvar)."""
        mu, logvar = self.encode(x, train)
        z = mu + jnp.exp(0.5 * logvar) * eps
        return self.decode(z, train), mu, logvar


def kl_to_standard_normal(mu, logvar):
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample: -1/2 sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * jnp.sum(1.0 + logvar - mu ** 2 - jnp.exp(logvar), axis=-1)


def vae_loss(recon, x, mu, logvar, kl_weight: float = 1.0):
    """Per-batch mean of (sum of squared pixel errors) + kl_weight * KL (app. B: L2 + KL); also the parts."""
    rec = jnp.sum((recon - x) ** 2, axis=tuple(range(1, x.ndim)))
    kl = kl_to_standard_normal(mu, logvar)
    return jnp.mean(rec + kl_weight * kl), (jnp.mean(rec), jnp.mean(kl))


def init_variables(module, rng, image_shape, latent: int | None = None):
    x = jnp.zeros((2,) + tuple(image_shape), jnp.float32)
    if latent is None:
        return module.init({"params": rng}, x, train=False)
    return module.init({"params": rng}, x, jnp.zeros((2, latent)), train=False)

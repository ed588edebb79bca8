"""Transformer blocks over the positions of a feature map, attending within facial regions.

:class:`RegionTransformer` is the local transformer of HTNet (Wang et al. 2024, "HTNet for
micro-expression recognition", after NesT): the map is cut into a grid of regions (on a face
aligned as the records are, a 2×2 grid puts the eyes and the two halves of the mouth in regions
of their own), and every position attends only to the positions of its own region; a grid of
1×1 is global attention. Pre-norm block: ``x + MHA(LN(x + position))`` then ``x + MLP(LN(x))``.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from components.attention.base import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegionTransformer(keras.layers.Layer):
    """One pre-norm transformer block whose attention stays inside each region of a grid.

    Args:
        heads: attention heads.
        key_dim: size of each head's query/key.
        mlp_ratio: hidden width of the MLP as a multiple of the channels.
        regions: the grid is ``regions × regions`` (H and W must divide by it).

    Call arguments:
        inputs: ``(B, H, W, C)`` with static H, W, C.

    Returns:
        ``(B, H, W, C)``.
    """

    def __init__(
        self, heads: int = 2, key_dim: int = 16, mlp_ratio: int = 2, regions: int = 1, **kwargs
    ):
        super().__init__(**kwargs)
        self.heads, self.key_dim, self.mlp_ratio, self.regions = heads, key_dim, mlp_ratio, regions

    def build(self, input_shape):
        _, height, width, channels = (int(d) if d is not None else None for d in input_shape)
        if height % self.regions or width % self.regions:
            raise ValueError(
                f"{self.name}: a {height}×{width} map does not split into a "
                f"{self.regions}×{self.regions} grid of regions"
            )
        tokens = (height // self.regions) * (width // self.regions)
        self.position = self.add_weight(
            name="position",
            shape=(height, width, channels),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        self.attention_norm = layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention_norm.build((None, tokens, channels))
        self.mha = layers.MultiHeadAttention(self.heads, self.key_dim, name="mha")
        self.mha.build((None, tokens, channels), (None, tokens, channels))
        self.mlp_norm = layers.LayerNormalization(epsilon=1e-6, name="mlp_norm")
        self.mlp_norm.build((None, tokens, channels))
        self.hidden = layers.Dense(channels * self.mlp_ratio, activation="gelu", name="hidden")
        self.hidden.build((None, tokens, channels))
        self.out = layers.Dense(channels, name="out")
        self.out.build((None, tokens, channels * self.mlp_ratio))

    def _split(self, x):
        """(B, H, W, C) → (B·R², H/R · W/R, C): the positions of each region as a sequence."""
        _, height, width, channels = x.shape
        r = self.regions
        x = ops.reshape(x, (-1, r, height // r, r, width // r, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, (height // r) * (width // r), channels))

    def _merge(self, x, height: int, width: int):
        r, channels = self.regions, x.shape[-1]
        x = ops.reshape(x, (-1, r, r, height // r, width // r, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, height, width, channels))

    def call(self, inputs, training=None):
        _, height, width, _ = inputs.shape
        x = self._split(inputs + self.position)
        normed = self.attention_norm(x)
        x = x + self.mha(normed, normed, training=training)
        x = x + self.out(self.hidden(self.mlp_norm(x)))
        return self._merge(x, height, width)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "key_dim": self.key_dim,
            "mlp_ratio": self.mlp_ratio,
            "regions": self.regions,
        }

"""Multi-head self-attention over spatial tokens (``mhsa``) and over frames (``temporal_mhsa``)."""

from __future__ import annotations

import keras
from keras import ops

from components.attention.base import PACKAGE, AttentionLayer

#: how tokens know where they are: a learned embedding added to each (ViT), or not at all
POSITIONS = ("learned", "none")


class TokenSelfAttention(AttentionLayer):
    """Shared core: tokens (B, N, D) + learned position embedding (unless ``positions`` is
    ``"none"``: then the layer is equivariant to a permutation of the tokens) →
    MultiHeadAttention → residual + LayerNorm. Subclasses turn their inputs into tokens and
    back."""

    def __init__(self, heads: int = 2, key_dim: int | None = None, dropout: float = 0.0,
                 positions: str = "learned", **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if positions not in POSITIONS:
            raise ValueError(f"positions: {positions!r}; valid: {', '.join(POSITIONS)}")
        self.heads = heads
        self.key_dim = key_dim
        self.dropout = dropout
        self.positions = positions

    def build_tokens(self, tokens: int, width: int, keys: int | None = None) -> None:
        self.position = None
        if self.positions == "learned":
            self.position = self.add_weight(
                name="position",
                shape=(tokens, width),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            )
        self.mha = keras.layers.MultiHeadAttention(
            num_heads=self.heads,
            key_dim=self.key_dim or max(1, width // self.heads),
            dropout=self.dropout,
            name="mha",
        )
        self.mha.build((None, tokens, width), (None, keys or tokens, width))
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.norm.build((None, tokens, width))

    def attend_tokens(self, tokens, training=None, keys=None):
        """(B, N, D) → (B, N, D) and the head-averaged attention (B, N, M): every token
        attends to the M tokens ``keys(embedded)`` (the embedded tokens themselves: M = N)."""
        embedded = tokens if self.position is None else tokens + self.position
        context = embedded if keys is None else keys(embedded)
        attended, scores = self.mha(
            embedded, context, return_attention_scores=True, training=training
        )
        return self.norm(embedded + attended), ops.mean(scores, axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "key_dim": self.key_dim,
            "dropout": self.dropout,
            "positions": self.positions,
        }


def key_stride(height: int, width: int, max_keys: int | None) -> int:
    """The smallest pooling stride that leaves at most ``max_keys`` of a height × width map's
    positions (``same`` padding: ⌈height/s⌉·⌈width/s⌉); 1 without a limit."""
    stride = 1
    while max_keys is not None and -(-height // stride) * -(-width // stride) > max_keys:
        stride += 1
    return stride


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialSelfAttention(TokenSelfAttention):
    """Self-attention over the H·W positions of a feature map.

    Each position is a token of width C; a learned position embedding is added, then
    ``keras.layers.MultiHeadAttention(heads, key_dim)``, a residual connection and layer norm;
    the tokens are folded back to H×W×C.

    With ``max_keys``, every position still makes a query, but keys and values are the
    embedded map average-pooled (``same`` padding) by the smallest stride that leaves at most
    ``max_keys`` positions: the spatial-reduction attention of PVT (Wang et al., ICCV 2021;
    pooled as in PVT v2's linear variant). Attention then costs H·W × keys instead of
    (H·W)²: on STSTNet's 28×28 streams, 100 keys are 7.8× fewer scores than 784. A map with
    no more than ``max_keys`` positions is attended in full (the layer is then the same as
    without it).

    Args:
        heads: number of attention heads.
        key_dim: size of each head's query/key; ``None`` uses ``max(1, C // heads)``.
        dropout: dropout on the attention weights.
        max_keys: at most this many key/value positions (pooled); ``None``: every position.
        positions: ``"learned"``: a position embedding added to the tokens (ViT's);
            ``"none"``: no embedding (fewer weights; the tokens' order is not seen).

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map (H and W must be static).

    Returns:
        ``(B, H, W, C)``; with ``return_attention=True`` also the head-averaged attention
        ``(B, H·W, h·w)`` (row i: how position i attends to each of the h×w key positions;
        h×w = H×W unless pooled).
    """

    def __init__(self, heads: int = 2, key_dim: int | None = None, dropout: float = 0.0,
                 max_keys: int | None = None, positions: str = "learned", **kwargs):  # fmt: skip
        super().__init__(heads, key_dim, dropout, positions, **kwargs)
        self.max_keys = max_keys

    def build(self, input_shape):
        _, height, width, channels = input_shape
        self.grid = (int(height), int(width))
        self.stride = key_stride(int(height), int(width), self.max_keys)
        keys = -(-int(height) // self.stride) * -(-int(width) // self.stride)
        self.build_tokens(int(height) * int(width), int(channels), keys)

    def attend(self, inputs, training=None):
        _, height, width, channels = inputs.shape
        tokens = ops.reshape(inputs, (-1, height * width, channels))
        outputs, attention = self.attend_tokens(
            tokens, training=training, keys=None if self.stride == 1 else self.pooled_keys
        )
        return ops.reshape(outputs, (-1, height, width, channels)), attention

    def pooled_keys(self, embedded):
        """The embedded tokens as a map, average-pooled by ``stride``, as tokens again."""
        channels = embedded.shape[-1]
        height, width = self.grid
        grid = ops.reshape(embedded, (-1, height, width, channels))
        pooled = ops.average_pool(grid, self.stride, self.stride, padding="same")
        return ops.reshape(pooled, (-1, pooled.shape[1] * pooled.shape[2], channels))

    def get_config(self):
        return {**super().get_config(), "max_keys": self.max_keys}


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemporalSelfAttention(TokenSelfAttention):
    """Self-attention over a sequence of per-frame features: one token per frame.

    Args:
        heads: number of attention heads.
        key_dim: size of each head's query/key; ``None`` uses ``max(1, D // heads)``.
        dropout: dropout on the attention weights.
        positions: ``"learned"`` (a frame-position embedding) or ``"none"``.

    Call arguments:
        inputs: ``(B, T, D)`` frame features (T static).

    Returns:
        ``(B, T, D)``; with ``return_attention=True`` also the head-averaged ``(B, T, T)``
        attention between frames.
    """

    def build(self, input_shape):
        _, frames, width = input_shape
        self.build_tokens(int(frames), int(width))

    def attend(self, inputs, training=None):
        return self.attend_tokens(inputs, training=training)

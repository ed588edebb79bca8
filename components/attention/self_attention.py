"""Multi-head self-attention over spatial tokens (``mhsa``) and over frames (``temporal_mhsa``)."""

from __future__ import annotations

import keras
from keras import ops

from components.attention.base import PACKAGE, AttentionLayer


class TokenSelfAttention(AttentionLayer):
    """Shared core: tokens (B, N, D) + learned position embedding → MultiHeadAttention →
    residual + LayerNorm. Subclasses turn their inputs into tokens and back."""

    def __init__(self, heads: int = 2, key_dim: int | None = None, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.key_dim = key_dim
        self.dropout = dropout

    def build_tokens(self, tokens: int, width: int) -> None:
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
        self.mha.build((None, tokens, width), (None, tokens, width))
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.norm.build((None, tokens, width))

    def attend_tokens(self, tokens, training=None):
        """(B, N, D) → (B, N, D) and the head-averaged attention (B, N, N)."""
        embedded = tokens + self.position
        attended, scores = self.mha(
            embedded, embedded, return_attention_scores=True, training=training
        )
        return self.norm(embedded + attended), ops.mean(scores, axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "heads": self.heads,
            "key_dim": self.key_dim,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpatialSelfAttention(TokenSelfAttention):
    """Self-attention over the H·W positions of a feature map.

    Each position is a token of width C; a learned position embedding is added, then
    ``keras.layers.MultiHeadAttention(heads, key_dim)``, a residual connection and layer norm;
    the tokens are folded back to H×W×C.

    Args:
        heads: number of attention heads.
        key_dim: size of each head's query/key; ``None`` uses ``max(1, C // heads)``.
        dropout: dropout on the attention weights.

    Call arguments:
        inputs: ``(B, H, W, C)`` feature map (H and W must be static).

    Returns:
        ``(B, H, W, C)``; with ``return_attention=True`` also the head-averaged attention
        ``(B, H·W, H·W)`` (row i: how position i attends to every position).
    """

    def build(self, input_shape):
        _, height, width, channels = input_shape
        self.build_tokens(int(height) * int(width), int(channels))

    def attend(self, inputs, training=None):
        _, height, width, channels = inputs.shape
        tokens = ops.reshape(inputs, (-1, height * width, channels))
        outputs, attention = self.attend_tokens(tokens, training=training)
        return ops.reshape(outputs, (-1, height, width, channels)), attention


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemporalSelfAttention(TokenSelfAttention):
    """Self-attention over a sequence of per-frame features: one token per frame.

    Args:
        heads: number of attention heads.
        key_dim: size of each head's query/key; ``None`` uses ``max(1, D // heads)``.
        dropout: dropout on the attention weights.

    Call arguments:
        inputs: ``(B, T, D)`` frame features (T static).

    Returns:
        ``(B, T, D)``; with ``return_attention=True`` also the head-averaged ``(B, T, T)``
        attention between frames.
    """

    input_rank = 3

    def build(self, input_shape):
        _, frames, width = input_shape
        self.build_tokens(int(frames), int(width))

    def attend(self, inputs, training=None):
        return self.attend_tokens(inputs, training=training)

"""mer-attention: micro-expression recognition experiments with attention modules."""

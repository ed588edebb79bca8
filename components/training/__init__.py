"""Training: runtime/strategy set-up, tf.data input, fit with validation-UF1 selection."""

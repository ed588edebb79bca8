"""Test-wide setup: quiet TensorFlow, two logical CPU devices for the multi-device paths."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

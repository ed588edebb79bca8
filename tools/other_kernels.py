"""Print the ``TF_ENABLE_ONEDNN_OPTS`` value that selects the CPU kernel set TensorFlow does
*not* use by default on this machine: ``1`` (oneDNN) where its default is Eigen, ``0`` (Eigen)
where it is oneDNN. ``make test-kernels`` runs its tier under it, so CI covers both sets on
whichever CPU it lands."""

import os
import sys

os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tensorflow.python.util import _pywrap_util_port

if __name__ == "__main__":
    sys.stdout.write("0\n" if _pywrap_util_port.IsMklEnabled() else "1\n")

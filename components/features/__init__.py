"""Motion features: TV-L1 optical flow, optical strain, the model input stack, clip sampling."""

from components.features.flow import optical_flow
from components.features.stack import flow_stack, flow_statistics, resize_flow, sample_indices
from components.features.strain import optical_strain

__all__ = [
    "flow_stack",
    "flow_statistics",
    "optical_flow",
    "optical_strain",
    "resize_flow",
    "sample_indices",
]

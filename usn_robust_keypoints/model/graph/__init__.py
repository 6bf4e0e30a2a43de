"""A user's own heatmap network (``torch.nn.Module`` or ONNX) as a certifiable, prunable graph."""

from .fx_import import import_module
from .net import GraphDetector, Node
from .spec import ModelSpec

__all__ = ["GraphDetector", "ModelSpec", "Node", "import_module"]

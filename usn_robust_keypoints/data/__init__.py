"""Target geometry + symmetry, synthetic scenes, COCO io, real evaluation photos."""

from .coco import LabelledImage, load_coco, save_coco
from .photo import PhotoConfig
from .realset import build_real_set, label_chessboard
from .synthetic import Scene, SceneConfig, SceneGenerator, generate_split
from .target import CHESSBOARD_9X6, ChessboardTarget

__all__ = ["CHESSBOARD_9X6", "ChessboardTarget", "LabelledImage", "PhotoConfig", "Scene", "SceneConfig", "SceneGenerator",
           "build_real_set", "generate_split", "label_chessboard", "load_coco", "save_coco"]

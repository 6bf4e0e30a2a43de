"""ament_python package: installs with `pip install .` / `pip install -e .` (venv) and `colcon build` (robot).

The ROS 2 install layout (ament index marker, share/<pkg>/{package.xml,launch,config}, lib/<pkg>/<exe>)
is defined once in usn_robust_keypoints/nodes/install_layout.py (loaded here by path, no ROS import).
"""

import importlib.util
import sys
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "usn_robust_keypoints"
ROOT = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_install_layout", ROOT / PACKAGE / "nodes" / "install_layout.py")
layout = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layout)

data_files = [(folder, [str(f.relative_to(ROOT)) for f in files]) for folder, files in layout.share_files(ROOT).items()]
if "bdist_wheel" in sys.argv:
    # pip route: console scripts go to bin/ (setup.cfg's install_scripts is ignored), so the wheel also
    # carries lib/<pkg>/<exe> wrappers for ros2 run / ros2 launch. colcon (setup.py install/develop)
    # puts the console scripts themselves there (setup.cfg) and must not get the wrappers.
    wrappers = layout.write_wrappers(ROOT / "build" / "ros_lib_wrappers")
    data_files.append((f"lib/{PACKAGE}", [str(w.relative_to(ROOT)) for w in wrappers]))

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json"]},
    data_files=data_files,
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.3",
        "numpy",
        "opencv-python-headless",
        "safetensors",
        "tqdm",
        "matplotlib",
        "pyyaml",
        "scikit-image",
        "torch-pruning>=1.5",
        "rosbags>=0.10",  # usn-keypoints certify-bag / record-bag (pure Python, ROS 2 db3 + mcap)
        "onnx>=1.14",  # reading users' ONNX models (model/graph/onnx_import.py); no runtime needed
    ],
    extras_require={"test": ["pytest"]},
    zip_safe=True,
    maintainer="usn_robust_keypoints developers",
    maintainer_email="dev@example.com",
    description="Keypoint detection with certified brightness/contrast robustness margins (USN pruning).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "usn-keypoints = usn_robust_keypoints.cli:main",
            # ROS 2 nodes (also in lib/usn_robust_keypoints for `ros2 run`/`ros2 launch`: setup.cfg for colcon,
            # wrappers in the wheel, install_layout for editable installs)
            "camera_source = usn_robust_keypoints.nodes.camera_source:main",
            "keypoint_detector = usn_robust_keypoints.nodes.keypoint_detector:main",
            "certifier = usn_robust_keypoints.nodes.certifier:main",
        ],
    },
)

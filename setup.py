"""ament_python package: installs with `pip install -e .` (venv) and `colcon build` (robot)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "usn_robust_keypoints"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
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
            # ROS 2 nodes (also installed to lib/usn_robust_keypoints for `ros2 run`, see setup.cfg)
            "camera_source = usn_robust_keypoints.nodes.camera_source:main",
            "keypoint_detector = usn_robust_keypoints.nodes.keypoint_detector:main",
            "certifier = usn_robust_keypoints.nodes.certifier:main",
        ],
    },
)

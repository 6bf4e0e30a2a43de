"""The ROS 2 install layout of this package, as colcon makes it and ``ros2 launch`` needs it:

- ``share/ament_index/resource_index/packages/usn_robust_keypoints`` (empty marker),
- ``share/usn_robust_keypoints/{package.xml, launch/*.launch.py, config/*}``,
- ``lib/usn_robust_keypoints/<node executable>`` for ``Node(package=, executable=)``.

colcon gets it from setup.py's ``data_files`` and setup.cfg's ``install_scripts``. On the pip route
console scripts land in ``bin/``, so a wheel also ships ``lib/usn_robust_keypoints/<exe>``
wrappers (:data:`WRAPPER`) that run the console script of the same prefix. ``pip install -e``
installs no ``data_files`` at all: ``python -m usn_robust_keypoints.nodes.install_layout`` (run by
scripts/setup.sh) creates the layout in the environment, with symlinks to the checkout's files.

Pure standard library: setup.py loads this file by path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PACKAGE = "usn_robust_keypoints"
EXECUTABLES = ("camera_source", "keypoint_detector", "certifier")
WRAPPER = """#!/bin/sh
# ros2 run / ros2 launch entry point of {package} (pip route): the console script of this prefix.
here=$(dirname "$0")
name=$(basename "$0")
[ -x "$here/../../bin/$name" ] && exec "$here/../../bin/$name" "$@"
exec python3 -m "{package}.nodes.$name" "$@"
"""


def share_files(root: Path) -> dict[str, list[Path]]:
    """Install folder (relative to the prefix) -> files of the source tree ``root``."""
    return {
        "share/ament_index/resource_index/packages": [root / "resource" / PACKAGE],
        f"share/{PACKAGE}": [root / "package.xml"],
        f"share/{PACKAGE}/launch": sorted((root / "launch").glob("*.launch.py")),
        f"share/{PACKAGE}/config": sorted((root / "config").glob("*.yaml")) + sorted((root / "config").glob("*.xml")),
    }


def write_wrappers(folder: Path) -> list[Path]:
    """Write the ``lib/<package>/<exe>`` wrappers into ``folder`` (executable); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for exe in EXECUTABLES:
        p = folder / exe
        p.write_text(WRAPPER.format(package=PACKAGE))
        p.chmod(0o755)
        out.append(p)
    return out


def install_editable(prefix: Path, root: Path) -> list[Path]:
    """Create the layout under ``prefix`` for an editable install of the checkout ``root``:
    symlinks to the checkout's files (so edits are live) and the executable wrappers."""
    made = []
    for folder, files in share_files(root).items():
        d = prefix / folder
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            link = d / f.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(f.resolve())
            made.append(link)
    made += write_wrappers(prefix / "lib" / PACKAGE)
    return made


def missing(prefix: Path) -> list[str]:
    """What ``ros2 launch`` needs under ``prefix`` and is not there (empty = complete)."""
    need = [prefix / "share/ament_index/resource_index/packages" / PACKAGE,
            prefix / "share" / PACKAGE / "package.xml",
            prefix / "share" / PACKAGE / "launch" / "demo.launch.py",
            prefix / "share" / PACKAGE / "config" / "demo.yaml"]
    out = [str(p) for p in need if not p.is_file()]
    out += [str(p) for p in (prefix / "lib" / PACKAGE / e for e in EXECUTABLES)
            if not (p.is_file() and os.access(p, os.X_OK))]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m usn_robust_keypoints.nodes.install_layout [--prefix P] [--root R]``."""
    ap = argparse.ArgumentParser(description="ROS 2 install layout for an editable (pip -e) install")
    ap.add_argument("--prefix", default=sys.prefix, help="environment prefix (default: this Python's)")
    ap.add_argument("--root", default=str(Path(__file__).resolve().parents[2]), help="source checkout")
    a = ap.parse_args(argv)
    made = install_editable(Path(a.prefix), Path(a.root))
    gaps = missing(Path(a.prefix))
    print(f"[install_layout] {len(made)} entries under {a.prefix}" + (f"; MISSING: {gaps}" if gaps else ""))
    return 1 if gaps else 0


if __name__ == "__main__":
    raise SystemExit(main())

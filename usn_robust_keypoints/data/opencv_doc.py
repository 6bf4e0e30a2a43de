"""Debian's ``opencv-doc`` package: real photos installed by package name into a cache folder."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

DATA_SUBDIR = Path("usr/share/doc/opencv-doc/examples/data")
# Real chessboard photos: left* is the evaluation set, right* is reserved for an independent check.
EVALUATION_PATTERNS = ("left*.jpg", "right*.jpg")
# Never used as backgrounds: every chessboard photo and anything showing a calibration target.
EXCLUDED_BACKGROUNDS = ("left*", "right*", "*chess*", "board*", "*calib*", "pic*", "box*", "aloe*",
                        "sudoku*", "*logo*", "*Logo*", "imageText*", "text*", "notes*", "digits*")


def cache_dir() -> Path:
    """``$USN_CACHE`` or ``<cwd>/.cache``."""
    return Path(os.environ.get("USN_CACHE", Path.cwd() / ".cache")).resolve()


def opencv_doc_data(cache: Path | None = None) -> Path:
    """Folder of opencv-doc's example data, downloading and extracting the package if needed
    (``apt-get download opencv-doc`` + ``dpkg -x``)."""
    root = (cache or cache_dir()) / "opencv-doc"
    data = root / DATA_SUBDIR
    if (data / "left01.jpg").is_file():
        return data
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        try:
            subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deb = next(Path(tmp).glob("opencv-doc_*.deb"))
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        except (OSError, subprocess.CalledProcessError, StopIteration) as e:
            detail = getattr(e, "stderr", "") or str(e)
            raise RuntimeError(
                "could not install the opencv-doc photos (needs apt-get and dpkg with access to a "
                f"Debian mirror): {detail.strip()}") from e
    if not (data / "left01.jpg").is_file():
        raise RuntimeError(f"opencv-doc extracted but {data / 'left01.jpg'} is missing")
    return data

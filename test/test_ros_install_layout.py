"""The ROS 2 install layout that `ros2 launch` / `ros2 run` need (lib/<pkg>/<exe>,
share/<pkg>/{package.xml,launch,config}, the ament index marker): in this environment (editable
install by scripts/setup.sh), in the wheel that `pip install .` installs, and in colcon's
`setup.py install` with setup.cfg."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from usn_robust_keypoints.nodes.install_layout import EXECUTABLES, PACKAGE, missing

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = sorted(p.name for p in (ROOT / "launch").glob("*.launch.py"))
CONFIG = sorted(p.name for p in (ROOT / "config").iterdir() if p.suffix in (".yaml", ".xml"))


def _share_ok(prefix: Path) -> None:
    share = prefix / "share" / PACKAGE
    assert (prefix / "share/ament_index/resource_index/packages" / PACKAGE).is_file()
    assert (share / "package.xml").is_file()
    assert sorted(p.name for p in (share / "launch").glob("*.launch.py")) == LAUNCH
    assert sorted(p.name for p in (share / "config").iterdir()) == CONFIG


def test_this_environment_has_the_layout():
    """scripts/setup.sh makes it for the editable install (pip -e installs no data_files)."""
    assert not missing(Path(sys.prefix)), f"run scripts/setup.sh: {missing(Path(sys.prefix))}"
    _share_ok(Path(sys.prefix))
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    assert Path(get_package_share_directory(PACKAGE)) == Path(sys.prefix) / "share" / PACKAGE
    assert Path(get_package_prefix(PACKAGE)) == Path(sys.prefix)


def test_wheel_ships_the_layout_and_its_wrappers_start_the_nodes(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "whl"), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (tmp_path / "whl").glob("*.whl")
    with zipfile.ZipFile(whl) as z:
        names = {i.filename: i.external_attr >> 16 for i in z.infolist()}
    data = f"{PACKAGE}-0.1.0.data/data/"
    for exe in EXECUTABLES:
        assert names.get(f"{data}lib/{PACKAGE}/{exe}", 0) & 0o111, f"no executable lib/{PACKAGE}/{exe} in the wheel"
    for f in [f"share/{PACKAGE}/package.xml", f"share/ament_index/resource_index/packages/{PACKAGE}"] + \
             [f"share/{PACKAGE}/launch/{n}" for n in LAUNCH] + [f"share/{PACKAGE}/config/{n}" for n in CONFIG]:
        assert data + f in names, f"{f} missing from the wheel"
    # installed (no deps) into a prefix: the lib/ wrapper runs the console script of that prefix
    prefix = tmp_path / "prefix"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed", "--prefix", str(prefix), str(whl)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    _share_ok(prefix)
    site = next(prefix.glob("lib/python*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site), "ROS_LOG_DIR": str(tmp_path / "ros"),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_DOMAIN_ID": str(100 + os.getpid() % 100)}
    log = tmp_path / "camera.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([str(prefix / "lib" / PACKAGE / "camera_source"), "--ros-args", "-p", "source:=synthetic"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "publishing" not in log.read_text() and proc.poll() is None:
            time.sleep(0.2)
        assert "publishing 'synthetic'" in log.read_text(), log.read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    r = subprocess.run([sys.executable, "-c", "import usn_robust_keypoints as u; print(u.__file__)"], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().startswith(str(site)), "the wrapper's prefix did not provide the package"


def test_colcon_setup_py_install_puts_the_node_scripts_in_lib(tmp_path):
    """colcon's ament_python build: `setup.py install` with setup.cfg's install_scripts (no wrappers)."""
    (tmp_path / "build").mkdir()
    r = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path / "build"),
                        "build", "--build-base", str(tmp_path / "build" / "b"), "install", "--prefix",
                        str(tmp_path / "install"), "--record", str(tmp_path / "rec.txt"),
                        "--single-version-externally-managed"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    prefix = tmp_path / "install"
    _share_ok(prefix)
    for exe in EXECUTABLES:
        script = prefix / "lib" / PACKAGE / exe
        assert os.access(script, os.X_OK), script
        text = script.read_text()
        assert text.startswith("#!") and "python" in text.splitlines()[0], f"{exe}: not the console script"
        assert "exec python3 -m" not in text, f"{exe}: the pip wrapper replaced colcon's console script"
    assert not (prefix / "bin").exists()


def test_editable_layout_links_to_the_checkout_and_is_idempotent(tmp_path):
    from usn_robust_keypoints.nodes.install_layout import install_editable

    made = install_editable(tmp_path, ROOT)
    assert made and not [m for m in missing(tmp_path) if "/lib/" not in m]
    assert (tmp_path / "share" / PACKAGE / "launch" / "demo.launch.py").resolve() == ROOT / "launch" / "demo.launch.py"
    install_editable(tmp_path, ROOT)  # idempotent
    assert not missing(tmp_path)

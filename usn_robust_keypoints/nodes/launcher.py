"""``usn-keypoints run``: start the nodes named in a ROS params YAML as separate processes
(``<node> --ros-args --params-file <yaml>``), DDS kept on loopback, stopped cleanly on Ctrl-C.

This is the no-``ros2 launch`` twin of ``launch/*.launch.py``: same executables, same YAML.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .install_layout import EXECUTABLES as _NODE_EXECUTABLES
from .install_layout import PACKAGE

# node name in the YAML -> executable (console script)
EXECUTABLES = {name: name for name in _NODE_EXECUTABLES}
LOOPBACK_PROFILE = "fastdds_loopback.xml"


def _candidate_config_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[2] / "config"]  # source checkout / editable install
    dirs.append(Path(sys.prefix) / "share" / PACKAGE / "config")  # pip install (data_files)
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE)) / "config")
    except (ImportError, LookupError, ValueError, PackageNotFoundError):
        pass
    return dirs


def find_config(name: str | Path) -> Path:
    """``name`` as given (a path) or, failing that, from the package's ``config`` folder."""
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    for d in _candidate_config_dirs():
        if (d / p.name).is_file():
            return (d / p.name).resolve()
    raise FileNotFoundError(f"config file {str(name)!r} not found (looked in the current folder and "
                            f"{', '.join(str(d) for d in _candidate_config_dirs())})")


def nodes_in_config(config: Path) -> list[str]:
    """Node names of the params YAML that this package provides, in the file's order."""
    data = yaml.safe_load(config.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config} is not a ROS params file (a mapping of node names)")
    names = [str(k).strip("/") for k in data if str(k).strip("/") in EXECUTABLES]
    if not names:
        raise ValueError(f"{config} has no section for any of {sorted(EXECUTABLES)}")
    return names


def loopback_env(base: dict | None = None, log_dir: Path | None = None) -> dict:
    """Environment for local runs: loopback-only Fast DDS profile, a random ``ROS_DOMAIN_ID``
    unless one is set, ``AMENT_PREFIX_PATH`` with this environment, logs in ``log_dir``."""
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(find_config(LOOPBACK_PROFILE)))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(random.randint(100, 199))
    prefix = env.get("AMENT_PREFIX_PATH", "")
    if sys.prefix not in prefix.split(":"):
        env["AMENT_PREFIX_PATH"] = f"{sys.prefix}:{prefix}" if prefix else sys.prefix
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def node_command(executable: str, config: Path | None = None, params: dict | None = None,
                 remaps: list[str] | None = None) -> list[str]:
    """Command line of one node: the console script of this environment (``python -m`` when the
    script is not installed), ``--ros-args --params-file`` + ``-p`` overrides + ``-r`` remaps."""
    script = Path(sys.executable).parent / executable
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", f"{PACKAGE}.nodes.{executable}"]
    cmd.append("--ros-args")
    if config is not None:
        cmd += ["--params-file", str(config)]
    for k, v in (params or {}).items():
        value = str(v).lower() if isinstance(v, bool) else (f'"{v}"' if isinstance(v, str) else str(v))
        cmd += ["-p", f"{k}:={value}"]
    for r in remaps or []:
        cmd += ["-r", r]
    return cmd


class NodeProcesses:
    """Nodes running as child processes; ``stop()`` (or leaving the ``with`` block) sends SIGTERM
    (rclpy shuts the node down cleanly, as on Ctrl-C), then SIGKILL to any that hang."""

    def __init__(self, env: dict, log_dir: Path | None = None) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "w")
        # own session: a terminal's Ctrl-C reaches only this process, which then stops the nodes
        proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
        if out is not None:
            out.close()
        self.procs[name] = proc
        return proc

    def dead(self) -> dict[str, int]:
        """Nodes that have exited, with their exit codes."""
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self, timeout: float = 8.0) -> dict[str, int]:
        """Stop every node (SIGTERM, then SIGKILL after ``timeout``); their exit codes."""
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            time.sleep(0.05)
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        for p in self.procs.values():
            p.wait()
        return {n: p.returncode for n, p in self.procs.items()}

    def __enter__(self) -> "NodeProcesses":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_nodes(config: Path, env: dict, log_dir: Path | None = None, remaps: list[str] | None = None,
                overrides: dict[str, dict] | None = None, only: list[str] | None = None) -> NodeProcesses:
    """Start every node with a section in ``config`` (or the ``only`` ones), with per-node
    ``overrides`` (``{node: {param: value}}``)."""
    procs = NodeProcesses(env, log_dir)
    for name in only or nodes_in_config(config):
        procs.start(name, node_command(EXECUTABLES[name], config, (overrides or {}).get(name), remaps))
    return procs


def _raise_interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def run(config: str | Path, duration: float | None = None, remaps: list[str] | None = None,
        log_dir: str | Path | None = None) -> int:
    """Run the nodes of ``config`` until Ctrl-C, ``duration`` seconds, or a node exits."""
    path = find_config(config)
    log = Path(log_dir) if log_dir else None
    env = loopback_env(log_dir=log)
    names = nodes_in_config(path)
    print(f"[run] {', '.join(names)} from {path} (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
          f"DDS profile {env['FASTDDS_DEFAULT_PROFILES_FILE']}); Ctrl-C stops", flush=True)
    procs = start_nodes(path, env, log, remaps)
    t_end = time.monotonic() + duration if duration else None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM (kill, systemd) stops the nodes too
    try:
        while not procs.dead() and (t_end is None or time.monotonic() < t_end):
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\n[run] stopping", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    dead = procs.dead()
    codes = procs.stop()
    for name, code in dead.items():
        print(f"[run] {name} exited early with code {code}", flush=True)
    print(f"[run] stopped: {codes}", flush=True)
    return 1 if dead else 0

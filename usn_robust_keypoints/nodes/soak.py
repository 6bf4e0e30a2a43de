"""``usn-keypoints soak``: camera_source -> keypoint_detector -> certifier for N minutes as separate
processes, with bad frames interleaved on the image topic, parameter changes (integers for
doubles, one refused value, a camera rate change), and a certifier SIGKILL + restart half-way.

Accounting: before the kill and at the end the camera is paused (``paused`` parameter) until every
node's counters are settled, so each frame a node received is processed, skipped, rejected or
failed; ``unaccounted`` is what is left. ``lost`` = frames published on the topic that a node never
received (DDS). RSS is read from /proc every 15 s; growth is from the warm value (the first
sample >= min(60 s, 20 % of the run) after the process started; for the certifier, the instance
running at the end) to the end. Writes ``soak.md`` (the table) and ``soak.json`` (RSS samples too)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from .diagnostics import COUNTS
from .launcher import EXECUTABLES, find_config, node_command
from .pipeline import running_pipeline

NODES = ("camera_source", "keypoint_detector", "certifier")


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (Linux /proc; NaN when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class RssLog:
    """RSS of every node process every ``period_s``; the warm value of a process is its first
    sample at least ``warm_s`` after it started (allocator and model warm-up), else its last."""

    def __init__(self, procs, warm_s: float, period_s: float = 15.0) -> None:
        self.procs, self.warm_s, self.period_s = procs, warm_s, period_s
        self.t0 = time.monotonic()
        self.started = {n: 0.0 for n in NODES}
        self.samples: dict[str, list[tuple[float, int, float]]] = {n: [] for n in NODES}
        self.next = self.t0

    def sample(self, node: str) -> float:
        pid = self.procs.procs[node].pid
        mb = rss_mb(pid)
        self.samples[node].append((round(time.monotonic() - self.t0, 1), pid, round(mb, 1)))
        return mb

    def tick(self) -> None:
        if time.monotonic() >= self.next:
            for n in NODES:
                self.sample(n)
            self.next += self.period_s

    def restarted(self, node: str) -> None:
        self.started[node] = time.monotonic() - self.t0
        self.sample(node)

    def warm(self, node: str) -> float:
        pid = self.procs.procs[node].pid
        mine = [(t, mb) for t, p, mb in self.samples[node] if p == pid]
        later = [mb for t, mb in mine if t >= self.started[node] + self.warm_s]
        return later[0] if later else mine[-1][1]


def bad_frames() -> list[tuple[str, Image, bool]]:
    """(kind, message, rejected?) of the interleaved frames; the clipped 32FC1 one is processed."""
    nan = np.full((32, 32), 0.5, np.float32)
    nan[3, 4] = np.nan
    hot = np.full((32, 32), 0.5, np.float32)
    hot[:4] = 3.0
    return [("unsupported encoding", Image(height=16, width=16, encoding="yuv422", step=32, data=bytes(512)), True),
            ("zero size", Image(height=0, width=0, encoding="mono8", step=0, data=b""), True),
            ("short step", Image(height=16, width=16, encoding="mono8", step=10, data=bytes(160)), True),
            ("truncated data", Image(height=16, width=16, encoding="bgr8", step=48, data=bytes(100)), True),
            ("NaN 32FC1", Image(height=32, width=32, encoding="32FC1", step=128, data=nan.tobytes()), True),
            ("32FC1 > 1 (clipped)", Image(height=32, width=32, encoding="32FC1", step=128, data=hot.tobytes()), False)]


class Driver:
    """In-process node of the soak: sends the bad frames and changes parameters."""

    def __init__(self, context) -> None:
        self.node = rclpy.create_node("usn_soak_driver", context=context)
        self.pub = self.node.create_publisher(Image, "image", 10)
        self.clients = {n: self.node.create_client(SetParameters, f"/{n}/set_parameters") for n in NODES}
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.sent = {"rejected": 0, "processed": 0}

    def send(self, msg: Image, rejected: bool) -> None:
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        self.sent["rejected" if rejected else "processed"] += 1

    def set(self, node: str, **params) -> list[tuple[bool, str]]:
        kinds = {bool: (ParameterType.PARAMETER_BOOL, "bool_value"),
                 int: (ParameterType.PARAMETER_INTEGER, "integer_value"),
                 float: (ParameterType.PARAMETER_DOUBLE, "double_value"),
                 str: (ParameterType.PARAMETER_STRING, "string_value")}
        client = self.clients[node]
        if not client.wait_for_service(timeout_sec=20.0):
            raise RuntimeError(f"{node} offers no set_parameters service")
        req = SetParameters.Request()
        for k, v in params.items():
            t, field = kinds[type(v)]
            req.parameters.append(ParameterMsg(name=k, value=ParameterValue(type=t, **{field: v})))
        future = client.call_async(req)
        deadline = time.monotonic() + 20.0
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not future.done():
            raise RuntimeError(f"{node}: no answer to set_parameters {params}")
        return [(r.successful, r.reason) for r in future.result().results]

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()


def _settled(mon, nodes, since: float) -> bool:
    for n in nodes:
        if mon.diagnostics_time(n) < since:
            return False
        c = mon.counts(n)
        if c.get("received", -1) != sum(c.get(k, 0) for k in ("processed", "skipped", "rejected", "failed")):
            return False
    return True


def _settle(mon, nodes, timeout: float = 30.0) -> dict[str, dict[str, int]]:
    """Wait until the nodes published two equal, fully accounted diagnostics after now."""
    t0 = time.time() + 0.5
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        time.sleep(1.05)
        if _settled(mon, nodes, t0):
            now = {n: mon.counts(n) for n in nodes}
            if now == last:
                return now
            last = now
    return {n: mon.counts(n) for n in nodes}


def run_soak(minutes: float = 10.0, source: str = "synthetic", rate: float = 10.0, model: str | None = None,
             out_dir: str | Path = "results/soak") -> int:
    """Run the soak; print and write the table; 0 when there were no crashes, no unaccounted
    frames and RSS grew at most 10 % after the warm-up."""
    from .demo import resolve_model, resolve_source

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_path = resolve_model(model)
    source = resolve_source(source)
    seconds = minutes * 60.0
    overrides = {"camera_source": {"source": source, "rate": float(rate)},
                 "keypoint_detector": {"model_path": str(model_path), "device": "cpu", "publish_debug_image": False},
                 "certifier": {"model_path": str(model_path), "device": "cpu", "budget_ms": 150.0}}
    events: list[str] = []
    cert_before: dict[str, int] = {}
    restarts = 0
    refused_ok = True
    t_start = time.time()

    def log(msg: str) -> None:
        line = f"[soak] {time.time() - t_start:7.1f} s  {msg}"
        events.append(line)
        print(line, flush=True)

    with running_pipeline("demo.yaml", out / "logs", overrides) as (procs, mon):
        driver = Driver(mon.context)
        try:
            deadline = time.monotonic() + 120.0
            while not mon.certificates and time.monotonic() < deadline and not procs.dead():
                time.sleep(0.2)
            if not mon.certificates:
                raise RuntimeError(f"no certificate within 120 s (nodes exited: {procs.dead()}; logs in {out / 'logs'})")
            rss = RssLog(procs, warm_s=min(60.0, 0.2 * seconds))
            log(f"first certificate; RSS {', '.join(f'{n} {rss.sample(n):.0f} MB' for n in NODES)}")
            bad = bad_frames()
            plan = [(0.2, "params"), (0.35, "camera_rate"), (0.5, "kill"), (0.7, "params2"), (0.8, "refused")]
            t0 = time.monotonic()
            i = 0
            next_bad = t0 + 1.0
            while (now := time.monotonic()) - t0 < seconds:
                if procs.dead():
                    log(f"CRASH: {procs.dead()}")
                    break
                rss.tick()
                if now >= next_bad:
                    kind, msg, rejected = bad[i % len(bad)]
                    driver.send(msg, rejected)
                    i += 1
                    next_bad = now + 1.5
                if plan and now - t0 >= plan[0][0] * seconds:
                    _, what = plan.pop(0)
                    if what == "params":
                        log(f"certifier radius=6 budget_ms=200 (ints): {driver.set('certifier', radius=6, budget_ms=200)}")
                    elif what == "camera_rate":
                        log(f"camera rate={int(rate) + 2} (int): {driver.set('camera_source', rate=int(rate) + 2)}")
                    elif what == "params2":
                        log(f"certifier alpha=0.03 radius=4.0: {driver.set('certifier', alpha=0.03, radius=4.0)}")
                    elif what == "refused":
                        res = driver.set("certifier", alpha=-1.0)
                        refused_ok = refused_ok and not res[0][0]
                        log(f"certifier alpha=-1 (must be refused): {res}")
                    elif what == "kill":
                        driver.set("camera_source", paused=True)
                        settled = _settle(mon, ("keypoint_detector", "certifier"))
                        cert_before = settled["certifier"]
                        log(f"camera paused, counts settled; SIGKILL certifier (pid {procs.procs['certifier'].pid}): "
                            f"{cert_before}")
                        old = procs.procs["certifier"]
                        old.send_signal(signal.SIGKILL)
                        old.wait()
                        t_kill = time.time()
                        del procs.procs["certifier"]
                        procs.start("certifier", node_command(EXECUTABLES["certifier"], find_config("demo.yaml"),
                                                              overrides["certifier"]))
                        wait_until = time.monotonic() + 90.0
                        while mon.diagnostics_time("certifier") < t_kill + 0.5 and time.monotonic() < wait_until:
                            time.sleep(0.2)
                        time.sleep(1.0)  # the restarted subscription matches the camera's publisher
                        restarts += 1
                        driver.set("camera_source", paused=False)
                        log(f"certifier restarted in {time.time() - t_kill:.1f} s (pid {procs.procs['certifier'].pid}); "
                            "camera resumed")
                        rss.restarted("certifier")
                time.sleep(0.05)
            crashed = procs.dead()
            rss1 = {n: (rss.sample(n) if n not in crashed else float("nan")) for n in NODES}
            rss0 = {n: rss.warm(n) for n in NODES}
            driver.set("camera_source", paused=True)
            final = _settle(mon, NODES)
            log(f"camera paused, final counts: {final}")
        finally:
            driver.close()
    rows = _rows(final, cert_before, driver.sent, rss0, rss1, restarts)
    table = markdown(rows, driver.sent, minutes, source, rate, model_path.name)
    ok = not crashed and all(r["unaccounted"] == 0 for r in rows) and refused_ok and all(
        not (r["rss_growth"] > 0.10) for r in rows)
    print(table, flush=True)
    (out / "soak.md").write_text(table + "\n")
    (out / "soak.json").write_text(json.dumps({"minutes": minutes, "source": source, "rate": rate,
                                               "model": model_path.name, "crashed": crashed, "ok": ok,
                                               "bad_frames_sent": driver.sent, "rows": rows, "events": events,
                                               "rss_mb": rss.samples},
                                              indent=1))
    print(f"[soak] {'OK' if ok else 'FAILED'}: wrote {out / 'soak.md'}", flush=True)
    return 0 if ok else 1


def _rows(final, cert_before, sent, rss0, rss1, restarts) -> list[dict]:
    cam = final["camera_source"]
    published = cam.get("processed", 0)
    on_topic = published + sent["rejected"] + sent["processed"]
    rows = [{"node": "camera_source", "sent": cam.get("received", 0), "received": cam.get("received", 0),
             **{k: cam.get(k, 0) for k in COUNTS if k != "received"}, "lost": 0, "restarts": 0}]
    for n in ("keypoint_detector", "certifier"):
        c = dict(final[n])
        if n == "certifier" and cert_before:
            c = {k: c.get(k, 0) + cert_before.get(k, 0) for k in COUNTS}
        rows.append({"node": n, "sent": on_topic, **{k: c.get(k, 0) for k in COUNTS},
                     "lost": on_topic - c.get("received", 0), "restarts": restarts if n == "certifier" else 0})
    for r in rows:
        r["unaccounted"] = r["received"] - sum(r[k] for k in ("processed", "skipped", "rejected", "failed"))
        r["rss_start_mb"], r["rss_end_mb"] = rss0[r["node"]], rss1[r["node"]]
        r["rss_growth"] = r["rss_end_mb"] / r["rss_start_mb"] - 1.0
    return rows


def markdown(rows: list[dict], sent: dict[str, int], minutes: float, source: str, rate: float, model: str) -> str:
    """The soak table."""
    head = ("| node | sent to it | received | processed | skipped | rejected | failed | clipped | lost (DDS) | "
            "unaccounted | RSS warm → end MB | growth | restarts |")
    lines = [f"Soak: {minutes:g} min, camera {source!r} at {rate:g} Hz, model {model}", "", head, "|" + "---|" * 13]
    for r in rows:
        lines.append(f"| {r['node']} | {r['sent']} | {r['received']} | {r['processed']} | {r['skipped']} | "
                     f"{r['rejected']} | {r['failed']} | {r['clipped']} | {r['lost']} | {r['unaccounted']} | "
                     f"{r['rss_start_mb']:.0f} → {r['rss_end_mb']:.0f} | {r['rss_growth']:+.1%} | {r['restarts']} |")
    lines.append("")
    lines.append(f"Interleaved bad frames: {sent['rejected'] + sent['processed']} sent by the soak ({sent['rejected']} "
                 f"to be rejected, {sent['processed']} 32FC1 > 1 to be processed with clipping) on top of the "
                 "camera's frames; camera_source rows: received = frames read, processed = published. RSS warm = "
                 "the first sample (every 15 s) >= min(60 s, 20 % of the run) after the first certificate "
                 "(certifier: after its restart).")
    return "\n".join(lines)

"""ROS 2 bags without a ROS install (``rosbags``, pure Python; sqlite3 ``.db3`` and ``mcap``):

- :func:`record_bag` (``usn-keypoints record-bag``): frames of a camera source (the opencv-doc
  photos, an image folder, a video, ``synthetic``) as ``sensor_msgs/Image`` or, with
  ``fmt=jpeg|png``, ``sensor_msgs/CompressedImage`` on ``<topic>/compressed``;
- :func:`certify_bag` (``usn-keypoints certify-bag``): every Image / CompressedImage of a topic
  through the detector and the certifier, exactly as the nodes do it, into a new bag with
  ``/keypoints`` (KeypointArray) and ``/certified_keypoints`` (CertifiedKeypoints) carrying the
  source stamps, plus a per-frame CSV/JSON report and a plot of the certified rate and r* over time.
  Bad frames get the nodes' rejection reasons in the report. The input bag is only read.

Our messages are registered with rosbags from their ``.msg`` files (the installed
``share/usn_robust_keypoints_msgs/msg`` or the checkout's ``msg/msg``). No rclpy needed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .image_conversion import ImageConversionError, compress, detector_frame, numpy_imgmsg_to_cv2

MSG_PACKAGE = "usn_robust_keypoints_msgs"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
KEYPOINTS = f"{MSG_PACKAGE}/msg/KeypointArray"
CERTIFIED = f"{MSG_PACKAGE}/msg/CertifiedKeypoints"
STORAGES = ("sqlite3", "mcap")


class BagError(ValueError):
    """A bag cannot be read or written as asked: the message says why."""


def msg_definitions_dir() -> Path:
    """Folder with our ``.msg`` files: installed (``<prefix>/share/usn_robust_keypoints_msgs/msg``
    for this Python's prefix or an ``AMENT_PREFIX_PATH`` entry), else the checkout's ``msg/msg``."""
    prefixes = [sys.prefix] + [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for p in prefixes:
        d = Path(p) / "share" / MSG_PACKAGE / "msg"
        if (d / "CertifiedKeypoints.msg").is_file():
            return d
    d = Path(__file__).resolve().parents[2] / "msg" / "msg"
    if (d / "CertifiedKeypoints.msg").is_file():
        return d
    raise BagError(f"cannot find the {MSG_PACKAGE} .msg files (install the msg/ package)")


def typestore():
    """rosbags type store: ROS 2 Kilted's standard messages + ours."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted(msg_definitions_dir().glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"{MSG_PACKAGE}/msg/{f.stem}"))
    store.register(types)
    return store


def _storage(name: str):
    from rosbags.rosbag2 import StoragePlugin

    if name not in STORAGES:
        raise BagError(f"storage must be one of {STORAGES}, got {name!r}")
    return StoragePlugin.SQLITE3 if name == "sqlite3" else StoragePlugin.MCAP


def bag_storage(path: Path) -> str:
    """``sqlite3`` or ``mcap``: the storage of an existing bag."""
    return "mcap" if any(Path(path).glob("*.mcap")) else "sqlite3"


# ---------------------------------------------------------------- recording

def record_bag(out: str | Path, source: str = "opencv-doc:left[0-9]*.jpg", topic: str = "/camera/image_raw",
               fmt: str = "raw", storage: str = "sqlite3", rate: float = 10.0, frames: int = 0,
               frame_id: str = "camera", width: int = 640, height: int = 480) -> int:
    """Write the frames of ``source`` into a new bag ``out``; returns the number of frames.

    ``fmt`` raw: ``sensor_msgs/Image`` (mono8/bgr8) on ``topic``; jpeg/png:
    ``sensor_msgs/CompressedImage`` on ``<topic>/compressed``. Stamps start now and advance by
    ``1/rate``; the bag time of each message equals its stamp. ``frames`` > 0 caps the count
    (needed for endless sources: ``synthetic`` and cameras)."""
    from rosbags.rosbag2 import Writer, WriterError

    from .frame_sources import open_frames

    if fmt not in ("raw", "jpeg", "png"):
        raise BagError(f"format must be raw, jpeg or png, got {fmt!r}")
    if not rate > 0:
        raise BagError(f"rate must be > 0 Hz, got {rate}")
    endless = source.strip() == "synthetic" or source.strip().isdigit() or source.strip().startswith("/dev/video")
    if endless and frames <= 0:
        raise BagError(f"source {source!r} is endless: give a frame count (--frames N)")
    try:
        it = open_frames(source, width, height, loop=False)
    except RuntimeError as e:  # the opencv-doc photos cannot be fetched
        raise BagError(f"cannot open source {source!r}: {e}") from e
    store = typestore()
    t = store.types
    msgtype = IMAGE if fmt == "raw" else COMPRESSED
    name = topic if fmt == "raw" else topic.rstrip("/") + "/compressed"
    t0 = time.time_ns()
    count = 0
    try:
        writer = Writer(Path(out), version=9, storage_plugin=_storage(storage))
    except WriterError as e:
        raise BagError(str(e)) from e
    with writer:
        conn = writer.add_connection(name, msgtype, typestore=store)
        for frame in it:
            if frames and count >= frames:
                break
            ns = t0 + int(round(count * 1e9 / rate))
            header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=ns // 10**9,
                                                                                       nanosec=ns % 10**9),
                                                frame_id=frame_id)
            if fmt == "raw":
                enc, ch = ("mono8", 1) if frame.ndim == 2 else ("bgr8", 3)
                msg = t[IMAGE](header=header, height=frame.shape[0], width=frame.shape[1], encoding=enc,
                               is_bigendian=0, step=frame.shape[1] * ch,
                               data=np.ascontiguousarray(frame).reshape(-1).view(np.uint8))
            else:
                enc = "mono8" if frame.ndim == 2 else "bgr8"
                msg = t[COMPRESSED](header=header, format=f"{enc}; {fmt} compressed {enc}",
                                    data=np.frombuffer(compress(frame, fmt), np.uint8))
            writer.write(conn, ns, store.serialize_cdr(msg, msgtype))
            count += 1
    if count == 0:
        raise BagError(f"source {source!r} gave no frames")
    return count


# ---------------------------------------------------------------- reading

@dataclass
class BagFrame:
    """One image message of the bag: its index, bag time and deserialised message (or the error)."""

    index: int
    log_time_ns: int
    msg: object | None
    error: str = ""


def read_image_frames(path: str | Path, topic: str, store=None) -> tuple[str, int, Iterator[BagFrame]]:
    """``(message type, message count, frames)`` of image ``topic`` in the bag at ``path``.

    Raises :class:`BagError` for a missing/corrupt bag, a missing topic or a non-image type; a
    message that does not deserialise is yielded with ``error`` set."""
    from rosbags.rosbag2 import Reader, ReaderError

    path = Path(path)
    if not path.exists():
        raise BagError(f"no bag at {path}")
    store = store or typestore()
    reader = Reader(path)
    try:
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError) as e:
        raise BagError(f"cannot read bag {path}: {e} (corrupt or not a ROS 2 bag)") from e
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        topics = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
        reader.close()
        raise BagError(f"topic {topic!r} is not in {path}; its topics: {', '.join(topics) or 'none'}")
    msgtype = conns[0].msgtype
    if msgtype not in (IMAGE, COMPRESSED):
        reader.close()
        raise BagError(f"topic {topic!r} has type {msgtype}; certify-bag reads {IMAGE} or {COMPRESSED}")
    count = sum(c.msgcount for c in conns)

    def frames() -> Iterator[BagFrame]:
        try:
            for i, (_, ns, raw) in enumerate(reader.messages(connections=conns)):
                try:
                    yield BagFrame(i, ns, store.deserialize_cdr(raw, msgtype))
                except Exception as e:  # noqa: BLE001 - a corrupt message is one bad frame
                    yield BagFrame(i, ns, None, f"message does not deserialise as {msgtype}: {e}")
        except (ReaderError, OSError, ValueError) as e:
            raise BagError(f"cannot read bag {path}: {e} (corrupt)") from e
        finally:
            reader.close()

    return msgtype, count, frames()


# ---------------------------------------------------------------- certification

def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _to_msgs(store, pred, names, cert, header, model_name: str):
    """Library results -> rosbags KeypointArray and CertifiedKeypoints (the fields of nodes/messages.py)."""
    t = store.types
    kc = t[f"{MSG_PACKAGE}/msg/KeypointCertificate"]  # status constants named as the Status members
    kp = t[KEYPOINTS](header=header, image_width=pred.geometry.frame_width, image_height=pred.geometry.frame_height,
                      keypoints=[t[f"{MSG_PACKAGE}/msg/Keypoint"](name=n, x=float(xy[0]), y=float(xy[1]), score=float(s))
                                 for n, xy, s in zip(names, pred.keypoints, pred.scores)])
    ck = t[CERTIFIED](header=header, alpha=float(cert.alpha), beta=float(cert.beta), radius=float(cert.radius),
                      backend=str(cert.backend), time_ms=float(cert.time_ms), frame_width=int(cert.frame_width),
                      frame_height=int(cert.frame_height), model_name=model_name,
                      keypoints=[kc(index=int(k.index), name=k.name, x=float(k.x), y=float(k.y), score=float(k.score),
                                    certified=bool(k.certified), status=getattr(kc, k.status.name),
                                    certified_radius=float(k.certified_radius), beta_star=float(k.beta_star),
                                    alpha_star=float(k.alpha_star), time_ms=float(k.time_ms),
                                    counterexample_c=float(k.counterexample[0]) if k.counterexample else math.nan,
                                    counterexample_b=float(k.counterexample[1]) if k.counterexample else math.nan)
                                 for k in cert.keypoints])
    return kp, ck


REPORT_FIELDS = ("index", "bag_time_ns", "stamp_ns", "result", "reason", "keypoints", "certified", "not_certified",
                 "refuted", "open", "unknown", "certified_rate", "mean_certified_radius", "statuses", "certify_ms")


def certify_bag(bag: str | Path, topic: str, out: str | Path | None = None, model: str | None = None,
                alpha: float = 0.02, beta: float = 0.02, radius: float = 4.0, backend: str = "native",
                budget_ms: float | None = None, margins: bool = True, device: str = "cpu",
                storage: str | None = None, progress: bool = True) -> dict:
    """Certify every image of ``topic`` in ``bag`` into the new bag ``out`` (default
    ``<bag>_certified``) and write ``<out>.csv``, ``<out>.json`` and ``<out>.png``; returns the
    summary. Each frame goes through the nodes' conversion and rejection rules, the detector
    (KeypointArray) and :func:`~usn_robust_keypoints.certify.certify` (CertifiedKeypoints)."""
    from rosbags.rosbag2 import Writer, WriterError
    from tqdm import tqdm

    from ..certify import certify
    from ..certify import validate_request
    from ..certify.results import Status
    from ..model import load_model

    bag = Path(bag).resolve()
    out = Path(out).resolve() if out else bag.with_name(bag.name + "_certified")
    if out == bag or bag in out.parents:
        raise BagError(f"--out {out} would write into the input bag {bag}; choose another folder")
    if out.exists():
        raise BagError(f"{out} exists already; choose another --out (bags are never overwritten)")
    validate_request((alpha, beta), radius, backend, budget_ms)  # before any work
    store = typestore()
    msgtype, count, frames = read_image_frames(bag, topic, store)
    net = load_model(model, device=device)
    model_name = net.path.name if net.path is not None else ""
    rows: list[dict] = []
    try:
        writer = Writer(out, version=9, storage_plugin=_storage(storage or bag_storage(bag)))
    except WriterError as e:
        raise BagError(str(e)) from e
    with writer:
        kp_conn = writer.add_connection("/keypoints", KEYPOINTS, typestore=store)
        ck_conn = writer.add_connection("/certified_keypoints", CERTIFIED, typestore=store)
        for f in tqdm(frames, total=count, desc="certify-bag", unit="frame", disable=not progress):
            row = {k: "" for k in REPORT_FIELDS}
            row.update(index=f.index, bag_time_ns=f.log_time_ns)
            try:
                if f.msg is None:
                    raise ImageConversionError(f.error)
                row["stamp_ns"] = _stamp_ns(f.msg.header)
                frame, _ = detector_frame(f.msg, to_array=numpy_imgmsg_to_cv2)
                pred = net.predict(frame)
                cert = certify(net, frame, alpha=alpha, beta=beta, radius=radius, backend=backend,
                               budget_ms=budget_ms, margins=margins)
            except (ImageConversionError, ValueError) as e:
                row.update(result="rejected", reason=str(e))
                rows.append(row)
                continue
            kp, ck = _to_msgs(store, pred, net.keypoint_names, cert, f.msg.header, model_name)
            writer.write(kp_conn, f.log_time_ns, store.serialize_cdr(kp, KEYPOINTS))
            writer.write(ck_conn, f.log_time_ns, store.serialize_cdr(ck, CERTIFIED))
            st = [k.status for k in cert.keypoints]
            radii = [k.certified_radius for k in cert.keypoints if math.isfinite(k.certified_radius)]
            row.update(result="certified", keypoints=len(st), certified=st.count(Status.CERTIFIED),
                       not_certified=st.count(Status.NOT_CERTIFIED), refuted=st.count(Status.REFUTED),
                       open=st.count(Status.OPEN), unknown=st.count(Status.UNKNOWN),
                       certified_rate=st.count(Status.CERTIFIED) / max(len(st), 1),
                       mean_certified_radius=float(np.mean(radii)) if radii else math.inf,
                       statuses=" ".join(s.value for s in st), certify_ms=round(cert.time_ms, 2))
            rows.append(row)
    done = [r for r in rows if r["result"] == "certified"]
    kps = sum(r["keypoints"] for r in done)
    summary = {"input": str(bag), "topic": topic, "type": msgtype, "output": str(out), "model": str(net.path),
               "alpha": alpha, "beta": beta, "radius": radius, "backend": backend, "budget_ms": budget_ms,
               "frames": len(rows), "certified_frames": len(done), "rejected_frames": len(rows) - len(done),
               "certified_rate": sum(r["certified"] for r in done) / kps if kps else math.nan}
    _write_report(out, rows, summary)
    return summary


def report_paths(out: Path) -> dict[str, Path]:
    """The report files next to the output bag ``out``: csv, json, png."""
    return {k: out.parent / f"{out.name}.{k}" for k in ("csv", "json", "png")}


def _write_report(out: Path, rows: list[dict], summary: dict) -> None:
    paths = report_paths(out)
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=REPORT_FIELDS)
        w.writeheader()
        w.writerows(rows)
    clean = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]
    paths["json"].write_text(json.dumps({"summary": {k: (None if isinstance(v, float) and math.isnan(v)
                                                                    else v) for k, v in summary.items()},
                                                    "frames": clean}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r["result"] == "certified"]
    t0 = min((r["stamp_ns"] for r in done), default=0)
    ts = [(r["stamp_ns"] - t0) * 1e-9 for r in done]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(ts, [100 * r["certified_rate"] for r in done], ".-")
    a.set_ylabel("certified keypoints %")
    a.set_ylim(-5, 105)
    b.plot(ts, [r["mean_certified_radius"] if math.isfinite(r["mean_certified_radius"]) else np.nan for r in done],
           ".-", color="C1")
    b.axhline(summary["radius"], ls="--", color="gray", lw=1, label=f"radius {summary['radius']:g} px")
    b.set_ylabel("mean finite r* (px)")
    b.set_xlabel("stamp (s from the first frame)")
    b.legend(loc="upper right")
    a.set_title(f"{Path(summary['input']).name} {summary['topic']}: α={summary['alpha']:g} β={summary['beta']:g}, "
                f"{summary['certified_frames']}/{summary['frames']} frames certified")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)

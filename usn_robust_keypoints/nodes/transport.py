"""Large image messages and the DDS transport.

With the shipped loopback profile (config/fastdds_loopback.xml) Fast DDS moves messages up to the
shared-memory ``segment_size`` (32 MiB) through shared memory; a larger one (e.g. an 8000x6000
mono8 image, 48 MB) falls back to fragmented UDP on 127.0.0.1: slower, and with best-effort QoS
frames are lost without either side saying so (measured: docs/ros.md "Large images"). The
publishing nodes therefore warn (throttled, counted as ``oversize``) when a frame exceeds the SHM
segment of the active profile, and refuse frames above the ``max_message_bytes`` parameter
(0 = no hard limit), with a clear log line either way.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

# Room for the message header and Fast DDS' own bookkeeping inside the segment.
SEGMENT_OVERHEAD_BYTES = 64 * 1024


def shm_segment_bytes(profile: str | Path | None = None) -> int | None:
    """``segment_size`` of the SHM transport in a Fast DDS XML profile (default: the one in
    ``FASTDDS_DEFAULT_PROFILES_FILE``); ``None`` when there is no such profile or transport."""
    path = profile or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
    if not path or not Path(path).is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    for desc in root.iter():
        if desc.tag.rsplit("}", 1)[-1] != "transport_descriptor":
            continue
        fields = {c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in desc}
        if fields.get("type", "").upper() == "SHM" and fields.get("segment_size", "").isdigit():
            return int(fields["segment_size"])
    return None


class SizeCheck:
    """The size rules for one publisher: ``check(nbytes)`` -> ``(publish?, problem or "")``."""

    def __init__(self, max_message_bytes: int = 0, profile: str | Path | None = None) -> None:
        self.limit = max_message_bytes if max_message_bytes > 0 else None
        seg = shm_segment_bytes(profile)
        self.segment = None if seg is None else seg - SEGMENT_OVERHEAD_BYTES

    def check(self, nbytes: int, what: str) -> tuple[bool, str]:
        if self.limit is not None and nbytes > self.limit:
            return False, (f"{what} is {nbytes} B, larger than max_message_bytes ({self.limit} B); not published")
        if self.segment is not None and nbytes > self.segment:
            return True, (f"{what} is {nbytes} B, larger than the shared-memory segment of the DDS profile "
                          f"({self.segment} B usable): Fast DDS sends it over fragmented UDP, slowly and, with "
                          "best-effort QoS, with silent losses. Raise segment_size in the profile, lower the "
                          "resolution, or set max_message_bytes to refuse such frames")
        return True, ""

"""The largest image message the DDS transport delivers.

With the shipped loopback profile (config/fastdds_loopback.xml) Fast DDS moves large messages
through a shared-memory segment of ``segment_size`` bytes (32 MiB); a message that does not fit
(e.g. an 8000x6000 mono8 image, 48 MB) is never delivered and no side reports it. The publishing
nodes therefore check the size first and log a clear error instead. The limit is the node
parameter ``max_message_bytes``: 0 = the SHM ``segment_size`` of the profile named by
``FASTDDS_DEFAULT_PROFILES_FILE`` (no check when there is none), a negative value = no check.
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


def message_limit_bytes(parameter: int) -> int | None:
    """The size limit for the ``max_message_bytes`` parameter value (see the module doc)."""
    if parameter < 0:
        return None
    if parameter > 0:
        return parameter
    seg = shm_segment_bytes()
    return None if seg is None else seg - SEGMENT_OVERHEAD_BYTES

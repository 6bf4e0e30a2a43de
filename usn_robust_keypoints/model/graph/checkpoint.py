"""Checkpoints of imported graphs: one ``.safetensors`` file, the graph and spec JSON in its metadata.

Loading never unpickles (safetensors only). The node list is data over a closed set of ops, so a
checkpoint from an untrusted source cannot run code either.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..checkpoint import CheckpointError, load_checked_weights
from .build import finish_graph
from .net import GraphDetector
from .spec import ModelSpec

FORMAT = "usn_robust_keypoints.graph/1"


def save_graph_checkpoint(det: GraphDetector, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``det`` (weights, graph, spec, optional ``extra`` JSON-able info) to ``path``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in det.state_dict().items()}
    spec = det.config.to_dict()
    meta = {"format": FORMAT, "graph": json.dumps(det.describe()), "spec": json.dumps(spec),
            "extra": json.dumps(extra or {})}
    save_file(state, str(path), metadata=meta)
    return path


def checkpoint_format(path: str | Path) -> str | None:
    """The ``format`` metadata of a safetensors file (None when it has none)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from e


def load_graph_checkpoint(path: str | Path) -> tuple[GraphDetector, dict]:
    """Load a graph checkpoint (eval mode, CPU) and its extra info; :class:`CheckpointError` says why not."""
    path = Path(path)
    if checkpoint_format(path) != FORMAT:
        raise CheckpointError(f"{path} is not an imported-graph checkpoint (format {FORMAT!r})")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    try:
        desc = json.loads(meta["graph"])
        spec = ModelSpec.from_dict(json.loads(meta["spec"]))
        extra = json.loads(meta.get("extra", "{}"))
        proto = GraphDetector.from_description(desc, spec)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid graph or spec: {e}") from e
    load_checked_weights(path, proto, "the graph")
    # The stored graph already holds the normalisation node: rebuild through the common checks.
    spec_nonorm = ModelSpec.from_dict({**spec.to_dict(), "mean": None, "std": None})
    try:
        det = finish_graph(proto.nodes, dict(proto.mods.items()), proto.output, spec_nonorm)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    det.config = spec
    return det, extra

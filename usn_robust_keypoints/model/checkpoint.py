"""Checkpoint io: one ``.safetensors`` file holding the weights and, in its metadata, the config.

Loading never unpickles anything (safetensors only), so a checkpoint from an untrusted source
cannot run code. Any problem (missing file, not a safetensors file, missing or mismatched config,
weights that do not fit the config) raises :class:`CheckpointError` with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .detector import DetectorConfig, HeatmapDetector

FORMAT = "usn_robust_keypoints.detector/1"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: the message says why."""


def save_checkpoint(model: HeatmapDetector, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``model`` (weights + config + optional ``extra`` JSON-able info) to ``path``."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(path.suffix + ".safetensors") if path.suffix else path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "extra": json.dumps(extra or {})}
    save_file(state, str(path), metadata=meta)
    return path


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's metadata: ``{"config": DetectorConfig, "extra": dict}``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a usn_robust_keypoints detector checkpoint "
                              f"(format {meta.get('format')!r}, expected {FORMAT!r})")
    try:
        config = DetectorConfig.from_dict(json.loads(meta["config"]))
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has an invalid config: {e}") from e
    return {"config": config, "extra": extra}


def load_detector(path: str | Path) -> tuple[HeatmapDetector, dict]:
    """Load a :class:`HeatmapDetector` (eval mode, CPU) and its extra info from ``path``."""
    meta = read_metadata(path)
    try:
        model = HeatmapDetector(meta["config"])
    except ValueError as e:
        raise CheckpointError(f"{path}: config does not build a detector: {e}") from e
    load_checked_weights(path, model, "the config")
    return model.eval(), meta["extra"]


def load_checked_weights(path: str | Path, module: torch.nn.Module, against: str) -> None:
    """Load the safetensors weights of ``path`` into ``module`` after checking that they are readable,
    match its state dict exactly (names and shapes; ``against`` names what defined it) and are finite."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: weights are unreadable: {e}") from e
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or bad:
        raise CheckpointError(
            f"{path}: weights do not match {against} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {bad[:3]})")
    if any(not torch.isfinite(v).all() for v in state.values() if v.is_floating_point()):
        raise CheckpointError(f"{path}: weights contain NaN or inf")
    module.load_state_dict(state)

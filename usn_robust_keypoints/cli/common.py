"""Helpers shared by several subcommands. Options left out keep the library dataclass's default
(:func:`given`), so every default has one source."""

from __future__ import annotations

import argparse


def given(**kw) -> dict:
    """The keyword arguments whose value was given (not None)."""
    return {k: v for k, v in kw.items() if v is not None}


def add_robust_args(p: argparse.ArgumentParser) -> None:
    """Certifiability-training options (defaults: ``certify.training_loss.RobustConfig``)."""
    g = p.add_argument_group("certifiability training (robustness term from the certifier's bounds; "
                             "defaults: RobustConfig)")
    g.add_argument("--robust-kappa", type=float, default=0.0, help="weight κ of the robustness term (0: off)")
    g.add_argument("--robust-eps", type=float, help="α = β of the training box after the ramp (default 0.1)")
    g.add_argument("--robust-ramp", type=float, help="fraction of the steps over which ε ramps up from 0 (default 0.5)")
    g.add_argument("--robust-batch", type=int, help="images per step for the robustness term (default 8)")
    g.add_argument("--robust-radius", type=float, help="disk radius r in model-input px (default 4)")
    g.add_argument("--robust-splits", type=int,
                   help="bound an S x S grid of sub-boxes of the training box (cost x S^2; tighter; default 1)")
    g.add_argument("--robust-sub-eps", type=float,
                   help="bound one random sub-box of this half-width inside the training box per image "
                        "(the certifier's leaves) instead of the whole box (default 0: whole box)")
    g.add_argument("--robust-first-tiles", action="store_true", default=None,
                   help="bound one of the certifier's first tiles of the box per image (the clip-kink cut the "
                        "search starts from) instead of the whole box")
    g.add_argument("--robust-form", choices=("softplus", "log"),
                   help="per-keypoint term: softplus(t - m) (default) or log1p(softplus(t - m))")


def robust_config(args: argparse.Namespace):
    """The ``RobustConfig`` of the ``--robust-*`` options (None when ``--robust-kappa`` is 0: off)."""
    from ..certify.training_loss import RobustConfig

    if not args.robust_kappa > 0:
        return None
    return RobustConfig(kappa=args.robust_kappa, **given(eps=args.robust_eps, ramp=args.robust_ramp,
                                                         batch=args.robust_batch, radius=args.robust_radius,
                                                         form=args.robust_form, splits=args.robust_splits,
                                                         sub_eps=args.robust_sub_eps,
                                                         first_tiles=args.robust_first_tiles))


def set_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` unless ``n`` is None/0 (torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)

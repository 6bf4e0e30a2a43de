"""Refusal messages for operations the certifier cannot bound (one table for both importers)."""

from __future__ import annotations

SUPPORTED = ("Conv2d (any stride, dilation, groups; zeros/replicate/reflect/circular padding), "
             "ConvTranspose2d, BatchNorm2d, ReLU, LeakyReLU, AvgPool2d, MaxPool2d, nearest/bilinear "
             "upsampling, residual add, channel concat, scalar scale/shift, identity/dropout")

_ACTIVATION = ("only ReLU and LeakyReLU (slope in [0, 1]) are supported as activations",
               "replace it with ReLU or LeakyReLU and retrain")
_ATTENTION = ("a product of two activations (attention, matmul) is not linear in the input and has no "
              "sound bound here", "build the network from convolutions only")
_RESHAPE = ("reshaping or flattening moves values between heatmap cells",
            "keep the (N, C, H, W) layout up to a 1x1 Conv2d heatmap head (flatten-free)")
_NORM = ("it normalises with statistics of the perturbed activations, not a fixed affine map",
         "use BatchNorm2d (its eval statistics fold into the conv)")

HINTS: dict[str, tuple[str, str]] = {
    "softmax": ("a softmax inside couples every heatmap cell non-linearly",
                "move the softmax out of the network: the certificate is about the argmax of logits"),
    "sigmoid": ("sigmoid is not piecewise linear",
                "return the logits and apply the sigmoid outside the network (it is monotone: same argmax)"),
    "tanh": _ACTIVATION, "hardtanh": _ACTIVATION, "relu6": _ACTIVATION, "gelu": _ACTIVATION, "silu": _ACTIVATION,
    "elu": _ACTIVATION, "selu": _ACTIVATION, "celu": _ACTIVATION, "softplus": _ACTIVATION, "mish": _ACTIVATION,
    "hardswish": _ACTIVATION, "hardsigmoid": _ACTIVATION, "prelu": _ACTIVATION, "exp": _ACTIVATION,
    "log": _ACTIVATION, "abs": _ACTIVATION, "pow": _ACTIVATION, "sqrt": _ACTIVATION,
    "matmul": _ATTENTION, "bmm": _ATTENTION, "mm": _ATTENTION, "einsum": _ATTENTION, "baddbmm": _ATTENTION,
    "multiheadattention": _ATTENTION, "scaled_dot_product_attention": _ATTENTION, "mul": _ATTENTION,
    "linear": ("a fully connected layer flattens the heatmap", "use a 1x1 Conv2d heatmap head (flatten-free)"),
    "gemm": ("a fully connected layer flattens the heatmap", "use a 1x1 Conv2d heatmap head (flatten-free)"),
    "flatten": _RESHAPE, "view": _RESHAPE, "reshape": _RESHAPE, "permute": _RESHAPE, "transpose": _RESHAPE,
    "layernorm": _NORM, "groupnorm": _NORM, "instancenorm2d": _NORM, "layer_norm": _NORM, "group_norm": _NORM,
    "instance_norm": _NORM, "instancenormalization": _NORM, "layernormalization": _NORM,
    "pad": ("an explicit padding op is not supported",
            "use the padding / padding_mode arguments of Conv2d (zeros, replicate, reflect or circular)"),
}


def refusal(node: str, op: str, why: str | None = None, fix: str | None = None) -> ValueError:
    """A ``ValueError`` naming the node, its op, why it is refused and what to change."""
    key = op.split(".")[-1].lower()
    hint = HINTS.get(key)
    why = why or (hint[0] if hint else f"{op} is not one of the supported operations")
    fix = fix or (hint[1] if hint else f"use only {SUPPORTED}")
    return ValueError(f"cannot certify this network: node {node!r} ({op}): {why}; {fix}")

"""Number parameters that accept integers: ROS users type ``radius:=6`` or ``budget_ms: 200`` for a
double, which a plain ``declare_parameter(name, 4.0)`` refuses (InvalidParameterTypeException at
start-up, "Wrong parameter type" at run time)."""

from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node


def declare_number(node: Node, name: str, default: float, description: str = "") -> None:
    """Declare a double parameter that also takes integer values (validated by :func:`as_number`)."""
    node.declare_parameter(name, float(default),
                           ParameterDescriptor(description=description or f"number (default {default:g})",
                                               dynamic_typing=True))


def as_number(name: str, value) -> float:
    """``value`` of parameter ``name`` as a float: ints and floats only (not bools or strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)

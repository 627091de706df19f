"""Ensemble components: one model each, behind one interface."""

from raycat.components.base import Component, ComponentError, Params, load_component
from raycat.components.registry import KINDS, component_class, register

__all__ = [
    "KINDS",
    "Component",
    "ComponentError",
    "Params",
    "component_class",
    "load_component",
    "register",
]

"""Synthetic demo catalogs: products, images, an old rules file and a config.

``raycat demo-data OUT_DIR --products N`` calls :func:`generate_catalog`.
"""

from raycat.demo.errors import DemoDataError
from raycat.demo.synthetic import DemoSummary, generate_catalog

__all__ = ["DemoDataError", "DemoSummary", "generate_catalog"]

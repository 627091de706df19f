"""The run report: one self-contained HTML page with tables and plots."""

from raycat.report.html import REPORT_FILENAME, render_report, write_report
from raycat.report.inputs import Missing, ReportError, RunInputs, load_inputs

__all__ = [
    "REPORT_FILENAME",
    "Missing",
    "ReportError",
    "RunInputs",
    "load_inputs",
    "render_report",
    "write_report",
]

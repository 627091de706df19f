import json
import subprocess
import sys

from typer.testing import CliRunner

from raycat.cli import app
from raycat.errors import ConfigError

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in (
        "catalog",
        "rules",
        "demo-data",
        "prepare",
        "train-pred",
        "quickstart",
    ):
        assert command in result.output


def test_catalog_check_on_flipkart(flipkart_config):
    result = runner.invoke(app, ["catalog", "check", str(flipkart_config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["products"] == 1050
    assert report["images"] == {"present": 1047, "missing": 3, "unreadable": 0}
    assert report["taxonomy"]["top_level"] == 7
    assert report["taxonomy"]["max_depth"] == 3
    coverage = report["label_coverage"]
    assert coverage["ground_truth"]["test"] == 210
    assert coverage["rule"]["products"] > 800
    assert any("no image file" in p["message"] for p in report["problems"])


def test_rules_report_on_flipkart(flipkart_config):
    result = runner.invoke(app, ["rules", "report", str(flipkart_config), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rule = report["rules"][0]
    assert {"precision", "recall", "products", "overlaps", "conflicts"} <= set(rule)
    assert all(
        0 <= c["precision"] <= 1
        for c in report["categories"]
        if c["precision"] is not None
    )
    assert 0.5 < report["totals"]["precision"] < 1


def test_prepare_writes_snapshots(tiny_config):
    result = runner.invoke(app, ["prepare", str(tiny_config), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["labels"]["rule"]["products"] >= 6
    assert data["labels"]["ground_truth"]["products"] == 2


def test_config_errors_reach_the_caller(tmp_path):
    result = runner.invoke(app, ["catalog", "check", str(tmp_path / "missing.yaml")])
    assert isinstance(result.exception, ConfigError)


def test_console_script_turns_errors_into_one_line_and_status_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from raycat.cli import main; main()",
            "catalog",
            "check",
            str(tmp_path / "missing.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: pipeline config" in proc.stderr
    assert "Traceback" not in proc.stderr

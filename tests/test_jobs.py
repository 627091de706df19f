"""The Ray job entry points, submitted for real to a local Ray head.

The head is started with ``ray start --head --block`` in its own process
group, its dashboard on loopback, on free ports and in its own temp dir, so it
never meets the Ray instance of the test session or of anyone else on the
machine.  It is stopped
by signalling that process group: ``ray stop`` would stop every Ray on the
machine.  Token auth is on, with a token made for this test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"

START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 420


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class LocalHead:
    """A Ray head of our own: its process group, ports, temp dir and token."""

    def __init__(self) -> None:
        # Short: Ray puts Unix sockets under it (107-byte path limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rcj", dir="/tmp"))
        ports = _free_ports(9)
        self.gcs_port, self.dashboard_port = ports[0], ports[1]
        self.agent_port = ports[3]
        self.env = os.environ.copy()
        # `python` in a job's entrypoint is the venv's, as on a cluster node
        # where raycat is installed.
        self.env["PATH"] = f"{VENV_BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["RAY_AUTH_MODE"] = "token"
        self.env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
        self.env.pop("RAY_ADDRESS", None)
        self.env["RAY_USAGE_STATS_ENABLED"] = "0"
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.cmd = [
            str(RAY),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={self.gcs_port}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--ray-client-server-port={ports[2]}",
            f"--dashboard-agent-listen-port={ports[3]}",
            f"--dashboard-agent-grpc-port={ports[4]}",
            f"--metrics-export-port={ports[5]}",
            f"--runtime-env-agent-port={ports[6]}",
            f"--node-manager-port={ports[7]}",
            f"--object-manager-port={ports[8]}",
            "--num-cpus=2",
            "--object-store-memory=300000000",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        self.log = open(self.temp_dir / "ray-start.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        """Until the jobs API answers and the dashboard agent, which runs the
        jobs' supervisors, listens (on a busy machine it comes up well after
        the dashboard, and a submission before it is dropped)."""
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited:\n{self.start_log()}")
            listed = self.ray("list", check=False).returncode == 0
            if listed and _listening(self.agent_port):
                return
            time.sleep(1)
        raise RuntimeError(
            f"the Ray head did not answer on {self.address} within "
            f"{START_TIMEOUT_S} s:\n{self.start_log()}"
        )

    def ray(
        self, command: str, *args: str, check: bool = True, timeout: float = 60, **kw
    ) -> subprocess.CompletedProcess[str]:
        """``ray job COMMAND --address <this head> ARGS...``"""
        args = (command, *args)
        r = subprocess.run(
            [str(RAY), "job", command, "--address", self.address, *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"ray {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
            )
        return r

    def start_log(self) -> str:
        self.log.flush()
        return (self.temp_dir / "ray-start.log").read_text()[-3000:]

    def stop(self) -> None:
        # SIGTERM makes `ray start --block` shut down the processes it started;
        # the group kill catches anything left (workers, the job's driver).
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def local_head() -> Iterator[LocalHead]:
    if not RAY.is_file():
        pytest.skip(f"no ray command next to {sys.executable}")
    head = LocalHead()
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="module")
def demo_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from raycat.demo import generate_catalog

    out = tmp_path_factory.mktemp("jobcat")
    generate_catalog(out / "catalog", 150, seed=1, image_size=32, workers=1)
    return out / "catalog" / "config.yaml"


def _wait_for_job(head: LocalHead, job_id: str) -> str:
    """Poll ``ray job status`` until the job ends; its final status."""
    deadline = time.time() + JOB_TIMEOUT_S
    status = ""
    while time.time() < deadline:
        status = head.ray("status", job_id).stdout
        # `ray job status` ends with "Job 'ID' succeeded" (failed, stopped).
        ended = re.search(rf"Job '{job_id}' (succeeded|failed|stopped)", status)
        if ended:
            return ended.group(1).upper()
        time.sleep(2)
    head.ray("stop", job_id, check=False)
    raise AssertionError(
        f"job {job_id} still running after {JOB_TIMEOUT_S} s:\n{status}"
    )


def _summary(logs: str) -> dict:
    """A job's summary: the last JSON line of its logs (workers' log lines reach
    the job's log as they come, so they may follow it)."""
    lines = [line for line in logs.strip().splitlines() if line.startswith("{")]
    assert lines, f"no JSON summary line in the job's logs: {logs[-2000:]}"
    return json.loads(lines[-1])


def test_train_pred_job_runs_on_a_submitted_cluster(
    local_head: LocalHead, demo_config: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    job_id = f"raycat_test_{secrets.token_hex(4)}"

    # Submitted as a user would, without --wait, then watched.
    runtime_env = {"env_vars": {"RAYCAT_HOME": str(home)}}
    local_head.ray(
        "submit",
        "--no-wait",
        f"--submission-id={job_id}",
        f"--working-dir={REPO}",
        f"--runtime-env-json={json.dumps(runtime_env)}",
        "--",
        "python",
        "jobs/train_pred.py",
        str(demo_config),
        "--components",
        "random",
        cwd=REPO,
    )
    status = _wait_for_job(local_head, job_id)
    logs = local_head.ray("logs", job_id).stdout
    assert status == "SUCCEEDED", logs[-4000:]

    summary = _summary(logs)
    assert summary["job"] == "train-pred"
    assert summary["ok"] is True
    assert summary["submission_id"] == job_id
    assert [r["component"] for r in summary["components"]] == ["random"]
    assert 0 <= summary["components"][0]["micro_f1"] <= 1
    # The job ran the raycat of its working dir, which Ray unpacked under the
    # head's temp dir, not the checkout.
    assert str(local_head.temp_dir) in logs.split("raycat from ", 1)[1].split()[0]

    # Its outputs are in RAYCAT_HOME.
    assert summary["home"] == str(home)
    metrics = json.loads((home / "metrics" / "train-pred.json").read_text())
    assert metrics["components"][0]["component"] == "random"
    assert metrics["components"][0]["ok"] is True


def test_a_failing_job_exits_non_zero_with_a_summary(
    local_head: LocalHead, tmp_path: Path
) -> None:
    job_id = f"raycat_test_{secrets.token_hex(4)}"
    local_head.ray(
        "submit",
        "--no-wait",
        f"--submission-id={job_id}",
        f"--working-dir={REPO}",
        "--",
        "python",
        "jobs/hypertune.py",
        str(tmp_path / "missing.yaml"),
        cwd=REPO,
    )
    assert _wait_for_job(local_head, job_id) == "FAILED"
    summary = _summary(local_head.ray("logs", job_id).stdout)
    assert summary["ok"] is False
    assert "not found" in summary["error"]


def test_rayignore_keeps_the_upload_small() -> None:
    patterns = (REPO / ".rayignore").read_text().split()
    for needed in (".venv/", "runs/", "data/", "__pycache__/"):
        assert needed in patterns


@pytest.mark.parametrize(
    "script", ["train_pred.py", "hypertune.py", "retrain.py", "score_pool.py"]
)
def test_job_scripts_answer_help(script: str) -> None:
    r = subprocess.run(
        [sys.executable, str(REPO / "jobs" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "config" in r.stdout

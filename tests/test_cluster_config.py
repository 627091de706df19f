"""cluster.yaml passes Ray's own cluster-config validation, offline.

``prepare_config`` merges the AWS provider's defaults (no cloud call, no
boto3) and ``validate_config`` checks the result against Ray's JSON schema,
the same checks ``ray up`` runs before it talks to AWS.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"

pytest.importorskip("jsonschema", reason="Ray's config validation needs jsonschema")


def _load() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def _validated(config: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    return _validated(_load())


def test_cluster_yaml_is_valid_for_ray(cluster: dict[str, Any]) -> None:
    assert cluster["cluster_name"] == "raycat"
    assert cluster["provider"]["type"] == "aws"
    for name, node_type in cluster["available_node_types"].items():
        assert node_type["node_config"].get("InstanceType"), name
        assert "resources" in node_type, name


def test_head_does_no_training_work(cluster: dict[str, Any]) -> None:
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"]["CPU"] == 0
    assert "GPU" not in head["resources"]


def test_workers_scale_from_zero(cluster: dict[str, Any]) -> None:
    workers = {
        n: t
        for n, t in cluster["available_node_types"].items()
        if n != cluster["head_node_type"]
    }
    assert workers
    for name, node_type in workers.items():
        assert node_type["min_workers"] == 0, name
        assert node_type["max_workers"] >= 1, name
    assert cluster["max_workers"] >= sum(t["max_workers"] for t in workers.values())


def test_gpu_and_cpu_workers(cluster: dict[str, Any]) -> None:
    types = cluster["available_node_types"]
    gpu = [n for n, t in types.items() if t["resources"].get("GPU", 0) >= 1]
    cpu = [
        n
        for n, t in types.items()
        if n != cluster["head_node_type"] and not t["resources"].get("GPU")
    ]
    assert gpu and cpu
    for name in gpu:
        node = types[name]
        # A GPU instance family, and CUDA TensorFlow installed on it.
        assert node["node_config"]["InstanceType"].startswith(("g5.", "g6.", "p")), name
        setup = " ".join(node.get("worker_setup_commands", []))
        assert "tensorflow[and-cuda]" in setup, name
    for name in cpu:
        market = types[name]["node_config"].get("InstanceMarketOptions", {})
        assert market.get("MarketType") == "spot", name


def test_nodes_install_raycat_and_get_the_repo(cluster: dict[str, Any]) -> None:
    assert "~/raycat" in cluster["file_mounts"]
    assert any("pip install" in c and ".[all]" in c for c in cluster["setup_commands"])
    assert ".venv" in cluster["rsync_exclude"]


def test_validation_rejects_a_node_type_without_node_config() -> None:
    import jsonschema

    broken = _load()
    del broken["available_node_types"]["gpu_worker"]["node_config"]
    with pytest.raises(jsonschema.ValidationError, match="node_config"):
        _validated(broken)


def test_validation_rejects_an_unknown_key() -> None:
    import jsonschema

    broken = _load()
    broken["available_node_types"]["head"]["resource"] = {"CPU": 0}
    with pytest.raises(jsonschema.ValidationError, match="resource"):
        _validated(broken)

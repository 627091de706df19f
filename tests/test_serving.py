"""The scoring app: a real Serve app on the session Ray instance, over HTTP.

One small demo run (a linear text model as the current model, the random
baseline next to it, a queued iteration) is served once for the module; the
tests call it with httpx on loopback.  The pure helpers (image paths, Label
Studio shapes) are tested without Serve at the end.
"""

from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from raycat.config import PipelineConfig, load_config
from raycat.labels import open_label_store
from raycat.serving import labelstudio
from raycat.serving.desk import decode_base64_image, image_under_root
from raycat.serving.errors import RequestError
from raycat.taxonomy import Taxonomy

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
N_PRODUCTS = 160
QUEUE_ITERATION = 1
MAX_PRODUCTS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_served_run(folder: Path) -> PipelineConfig:
    """A demo run ready to serve: two saved models, current.json, a queue."""
    from raycat.components import component_class
    from raycat.demo import generate_catalog
    from raycat.ensembles.selection import write_current
    from raycat.run import prepare_run

    summary = generate_catalog(folder, N_PRODUCTS, seed=1, image_size=32, workers=1)
    config = load_config(summary.config_path)
    run, _ = prepare_run(config)

    closed = run.ground_truth.closed(run.taxonomy)
    frame = run.catalog.products.copy()
    frame["targets"] = [sorted(closed.get(p, ())) for p in frame["product_id"]]
    frame = frame[frame["targets"].map(len) > 0]
    cut = int(len(frame) * 0.8)
    for name, kind in (("tfidf", "linear"), ("random", "random")):
        comp = component_class(kind)(run.taxonomy, {}, name=name)
        comp.fit(frame.iloc[:cut], frame.iloc[cut:])
        comp.save(run.paths.home / "models" / name)
    write_current(
        run.paths.home, "tfidf", run.paths.home / "models" / "tfidf", "micro_f1", 0.5
    )

    pool = run.ground_truth.pool_ids[:40]
    items = pd.DataFrame(
        {
            "product_id": pool,
            "category": [sorted(closed[p])[0] for p in pool],
            "strategy": "uncertainty",
            "p_model": np.linspace(0.4, 0.6, len(pool)),
            "rule_positive": [i % 2 for i in range(len(pool))],
        }
    )
    with run.open_store() as store:
        store.enqueue(items, iteration=QUEUE_ITERATION)

    s = config.serving
    s.port = free_port()
    s.token = TOKEN
    # Two CPUs in the test Ray instance: the replicas must not reserve them.
    s.model_num_cpus = 0.1
    s.ingress_num_cpus = 0.1
    # Long enough that concurrent test calls land in one batch.
    s.batch_wait_s = 0.05
    s.model_refresh_s = 0.5
    s.max_products_per_request = MAX_PRODUCTS
    s.max_image_bytes = 4096
    s.max_page_size = 20
    return config


def start_app(config: PipelineConfig) -> httpx.Client:
    from raycat.serving.app import start

    start(config)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{config.serving.port}", timeout=60.0
    )
    deadline = time.time() + 120
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return client
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise TimeoutError("the scoring app did not answer /healthz in 120 s")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    config = build_served_run(tmp_path_factory.mktemp("serving"))
    client = start_app(config)
    yield config, client
    client.close()
    serve.shutdown()


@pytest.fixture(scope="module")
def taxonomy(served) -> Taxonomy:
    config, _ = served
    return Taxonomy.load(Path(config.home) / "taxonomy.json")


def catalog(config: PipelineConfig) -> pd.DataFrame:
    return pd.read_parquet(Path(config.home) / "catalog.parquet")


def human_rows(config: PipelineConfig, taxonomy: Taxonomy, labeler: str) -> set:
    with open_label_store(config.home, taxonomy) as store:
        events = store.events(sources="human", labeler=labeler)
    cols = ["product_id", "category", "value", "iteration", "derived_from"]
    events = events[cols].astype(object)
    events = events.where(events.notna(), None)
    return set(events.itertuples(index=False, name=None))


# -- scoring --------------------------------------------------------------------


def test_score_returns_consistent_probabilities_for_every_category(served, taxonomy):
    config, client = served
    products = catalog(config).head(3)
    root = Path(config.dataset.catalog.image_root)
    image_bytes = Path(products["image"].iloc[1]).read_bytes()
    body = {
        "products": [
            {
                "product_id": products["product_id"].iloc[0],
                "title": products["title"].iloc[0],
                "description": products["description"].iloc[0],
                "image": {
                    "path": str(Path(products["image"].iloc[0]).relative_to(root))
                },
            },
            {
                "title": products["title"].iloc[1],
                "image": {"base64": base64.b64encode(image_bytes).decode()},
            },
            {"title": products["title"].iloc[2], "colour": "red"},
        ]
    }
    r = client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model"] == "tfidf"
    assert out["components"] == ["tfidf"]
    assert [p["product_id"] for p in out["products"]] == [
        products["product_id"].iloc[0],
        "1",
        "2",
    ]
    for product in out["products"]:
        cats = {c["category"]: c for c in product["categories"]}
        assert set(cats) == set(taxonomy.ids)
        for cid, c in cats.items():
            assert 0.0 <= c["probability"] <= 1.0
            assert c["components"]["tfidf"] == pytest.approx(c["probability"])
            assert c["entropy"] >= 0
            assert c["disagreement"] is None  # no image model in this run
            parent = taxonomy.parent(cid)
            if parent is not None:
                assert c["probability"] <= cats[parent]["probability"] + 1e-6
        probs = [c["probability"] for c in product["categories"]]
        assert probs == sorted(probs, reverse=True)


def test_score_marks_where_the_old_rules_put_a_product(served, taxonomy):
    config, client = served
    rules = yaml.safe_load(Path(config.dataset.rules).read_text())["rules"]
    rule = next(r for r in rules if not r["all"] and not r["none"] and not r["regex"])
    title = f"A {rule['any'][0]} for the kitchen"
    r = client.post(
        "/v1/score",
        json={
            "products": [{"title": title}],
            "top_k": 200,
            "include_components": False,
        },
    )
    assert r.status_code == 200, r.text
    product = r.json()["products"][0]
    cid = taxonomy.resolve(rule["category"])
    assert {"rule": rule["name"], "category": cid} in [
        {"rule": m["rule"], "category": m["category"]} for m in product["rules"]
    ]
    flagged = {c["category"] for c in product["categories"] if c["rule"]}
    assert {cid, *taxonomy.ancestors(cid)} <= flagged
    assert "components" not in product["categories"][0]


def test_score_filters_by_probability_and_top_k(served):
    _, client = served
    body = {"products": [{"title": "plain thing"}], "top_k": 3}
    top = client.post("/v1/score", json=body).json()["products"][0]["categories"]
    assert len(top) == 3
    threshold = top[1]["probability"]
    body = {"products": [{"title": "plain thing"}], "min_probability": threshold}
    kept = client.post("/v1/score", json=body).json()["products"][0]["categories"]
    assert kept and all(c["probability"] >= threshold for c in kept)


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        (
            {"products": [{"title": "x"}] * (MAX_PRODUCTS + 1)},
            413,
            r"products: 9 products in one request; the limit is "
            r"serving\.max_products_per_request = 8",
        ),
        ({"products": [{"description": "no title"}]}, 422, r"products\[0\]\.title"),
        ({"products": []}, 422, r"products: List should have at least 1 item"),
        ({"products": [{"title": "x", "colour": 3}]}, 422, r"products\[0\]\.colour"),
        (
            {"products": [{"title": "x", "image": {"path": "../../etc/passwd"}}]},
            422,
            r"products\[0\]\.image\.path: '\.\./\.\./etc/passwd' escapes the "
            r"image root",
        ),
        (
            {
                "products": [
                    {"title": "x", "image": {"path": "a.jpg", "url": "http://x"}}
                ]
            },
            422,
            r"products\[0\]\.image: .*exactly one of url, path or base64",
        ),
        (
            {"products": [{"title": "x", "image": {"base64": "A" * 8000}}]},
            413,
            r"products\[0\]\.image\.base64: .*serving\.max_image_bytes = 4096",
        ),
        (
            {"products": [{"title": "x", "image": {"base64": "not base64!"}}]},
            422,
            r"products\[0\]\.image\.base64: not valid base64",
        ),
        ({"products": [{"title": "x"}], "top_k": 0}, 422, r"top_k"),
    ],
)
def test_score_refuses_bad_input_naming_the_field(served, body, status, match):
    _, client = served
    r = client.post("/v1/score", json=body)
    assert r.status_code == status, r.text
    with pytest.raises(AssertionError, match=match):
        raise AssertionError(r.json()["detail"])


def test_concurrent_calls_are_scored_in_batches(served):
    _, client = served
    before = client.get("/v1/model").json()["stats"]
    n_calls = 12

    def call(i: int) -> int:
        body = {"products": [{"title": f"product {i}"}], "top_k": 1}
        return client.post("/v1/score", json=body).status_code

    with ThreadPoolExecutor(n_calls) as pool:
        assert list(pool.map(call, range(n_calls))) == [200] * n_calls
    after = client.get("/v1/model").json()
    stats = after["stats"]
    assert after["batching"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.05}
    assert stats["calls"] - before["calls"] == n_calls
    assert stats["batches"] - before["batches"] < n_calls
    assert stats["max_batch_calls"] > 1


# -- model, health, docs, images ---------------------------------------------------


def test_model_health_docs_and_images(served, taxonomy):
    config, client = served
    info = client.get("/v1/model").json()
    assert info["model"] == "tfidf"
    assert info["path"].endswith("models/tfidf")
    assert [c["id"] for c in info["categories"]] == taxonomy.ids
    assert client.get("/healthz").json()["status"] == "ok"
    assert "/v1/score" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200

    pid = catalog(config)["product_id"].iloc[0]
    image = client.get(f"/v1/images/{pid}")
    assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"
    missing = client.get("/v1/images/no-such-product")
    assert missing.status_code == 404
    assert "no-such-product" in missing.json()["detail"]


# -- auth, queue, labels ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "match"),
    [
        ("GET", "/v1/queue?labeler=a", {}, r"Authorization: missing"),
        ("GET", "/v1/queue?labeler=a", {"Authorization": "Bearer nope"}, r"not valid"),
        ("POST", "/v1/labels", {}, r"Authorization: missing"),
        ("POST", "/webhook", {"Authorization": "Token x"}, r"Authorization: missing"),
    ],
)
def test_write_endpoints_need_the_token(served, method, path, headers, match):
    _, client = served
    r = client.request(method, path, headers=headers, json={})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    with pytest.raises(AssertionError, match=match):
        raise AssertionError(r.json()["detail"])


def test_two_labelers_get_disjoint_queue_pages(served):
    _, client = served
    alice = client.get("/v1/queue?labeler=alice&size=5", headers=AUTH)
    bob = client.get("/v1/queue?labeler=bob&size=5", headers=AUTH)
    assert alice.status_code == bob.status_code == 200, alice.text + bob.text
    a = [i["product_id"] for i in alice.json()["items"]]
    b = [i["product_id"] for i in bob.json()["items"]]
    assert len(a) == len(b) == 5
    assert not set(a) & set(b)

    again = client.get("/v1/queue?labeler=alice&size=5", headers=AUTH).json()
    assert [i["product_id"] for i in again["items"]] == a
    item = again["items"][0]
    assert item["iteration"] == QUEUE_ITERATION
    assert item["title"] and item["image_url"] == f"/v1/images/{item['product_id']}"
    assert item["asked"]["strategy"] == "uncertainty"
    assert len(item["top"]) == 5
    assert item["reserved_until"] > time.time()

    too_many = client.get("/v1/queue?labeler=alice&size=21", headers=AUTH)
    assert too_many.status_code == 422
    with pytest.raises(AssertionError, match=r"size: 21 items asked; at most"):
        raise AssertionError(too_many.json()["detail"])


def test_labels_are_stored_once_however_often_they_are_sent(served, taxonomy):
    config, client = served
    page = client.get("/v1/queue?labeler=carol&size=2", headers=AUTH).json()["items"]
    assert len(page) == 2
    first, second = page
    leaf = next(c for c in taxonomy.ids if taxonomy.depth(c) > 0)
    labels = [
        {
            "product_id": first["product_id"],
            "category": first["asked"]["path"],
            "value": 1,
        },
        {"product_id": second["product_id"], "category": leaf, "value": 0},
    ]
    body = {"labeler": "carol", "labels": labels}

    r = client.post("/v1/labels", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["saved"] == 2 and out["completed"] == 2
    assert out["rows"] >= 2
    stored = human_rows(config, taxonomy, "carol")
    assert len(stored) == out["rows"]
    asked = taxonomy.resolve(first["asked"]["path"])
    assert (first["product_id"], asked, 1, QUEUE_ITERATION, None) in stored
    for parent in taxonomy.ancestors(asked):
        assert (first["product_id"], parent, 1, QUEUE_ITERATION, asked) in stored

    again = client.post("/v1/labels", json=body, headers=AUTH).json()
    assert again["saved"] == 2 and again["completed"] == 0
    assert human_rows(config, taxonomy, "carol") == stored

    with open_label_store(config.home, taxonomy) as store:
        done = store.queue(status="done")
    assert {first["product_id"], second["product_id"]} <= set(done["product_id"])


@pytest.mark.parametrize(
    ("label", "match"),
    [
        (
            {"category": "No Such > Category"},
            r"labels\[0\]\.category: unknown category",
        ),
        ({"value": 2}, r"labels\[0\]\.value"),
        ({"product_id": ""}, r"labels\[0\]\.product_id"),
    ],
)
def test_bad_labels_are_refused_naming_the_field(served, taxonomy, label, match):
    _, client = served
    good = {"product_id": "P1", "category": taxonomy.ids[0], "value": 1}
    body = {"labeler": "dave", "labels": [good | label]}
    r = client.post("/v1/labels", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    with pytest.raises(AssertionError, match=match):
        raise AssertionError(r.json()["detail"])


# -- Label Studio ------------------------------------------------------------------


def test_labelstudio_setup_predict_and_health(served, taxonomy):
    config, client = served
    schema = client.get("/v1/labelstudio/config").text
    assert '<Choices name="category" toName="text"' in schema
    setup = client.post("/setup", json={"project": "1.1", "schema": schema})
    assert setup.status_code == 200, setup.text
    version = setup.json()["model_version"]
    assert client.get("/health").json()["status"] == "UP"

    pid = catalog(config)["product_id"].iloc[5]
    tasks = [
        {"id": 11, "data": {"product_id": pid}},
        {"id": 12, "data": {"text": "a product only Label Studio knows"}},
    ]
    r = client.post(
        "/predict", json={"tasks": tasks, "label_config": schema, "project": "1.1"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == version
    assert len(out["results"]) == 2
    paths = {taxonomy.path_str(c) for c in taxonomy.ids}
    for prediction in out["results"]:
        assert set(prediction) == {"model_version", "score", "result"}
        assert prediction["model_version"] == version
        assert 0.0 <= prediction["score"] <= 1.0
        for result in prediction["result"]:
            assert result["from_name"] == "category"
            assert result["to_name"] == "text"
            assert result["type"] == "choices"
            assert set(result["value"]["choices"]) <= paths

    bad = client.post("/predict", json={"tasks": [{"id": 1, "data": {}}]})
    assert bad.status_code == 422
    assert "tasks[0].data" in bad.json()["detail"]


def test_labelstudio_annotations_are_stored_through_the_webhook(served, taxonomy):
    config, client = served
    pid = catalog(config)["product_id"].iloc[7]
    leaf = next(c for c in taxonomy.ids if taxonomy.depth(c) == 2)
    other = next(c for c in taxonomy.roots if c != taxonomy.top_level(leaf))
    event = {
        "action": "ANNOTATION_CREATED",
        "annotation": {
            "id": 3,
            "completed_by": 7,
            "result": [
                {
                    "from_name": "category",
                    "to_name": "text",
                    "type": "choices",
                    "value": {"choices": [taxonomy.path_str(leaf)]},
                }
            ],
        },
        "task": {"id": 21, "data": {"product_id": pid, "category": other}},
        "project": {"id": 1},
    }
    r = client.post("/webhook", json=event, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "stored"
    stored = human_rows(config, taxonomy, "labelstudio:7")
    positives = {c for p, c, v, _, _ in stored if p == pid and v == 1}
    negatives = {c for p, c, v, _, _ in stored if p == pid and v == 0}
    assert positives == {leaf, *taxonomy.ancestors(leaf)}
    assert other in negatives

    event["action"] = "ANNOTATION_UPDATED"
    assert (
        client.post("/webhook", json=event, headers=AUTH).json()["rows"]
        == r.json()["rows"]
    )
    assert human_rows(config, taxonomy, "labelstudio:7") == stored
    ignored = client.post("/webhook", json={"action": "PROJECT_UPDATED"}, headers=AUTH)
    assert ignored.json() == {"status": "ignored", "action": "PROJECT_UPDATED"}


# -- a new current model ------------------------------------------------------------


def test_a_new_current_model_is_picked_up_without_a_restart(served):
    from raycat.ensembles.selection import write_current

    config, client = served
    home = Path(config.home)
    old = client.get("/v1/model").json()["model_version"]
    write_current(home, "random", home / "models" / "random", "micro_f1", 0.1)
    try:
        deadline = time.time() + 30
        info = client.get("/v1/model").json()
        while info["model"] != "random" and time.time() < deadline:
            time.sleep(0.3)
            info = client.get("/v1/model").json()
        assert info["model"] == "random"
        assert info["model_version"] != old
        body = {"products": [{"title": "x"}], "top_k": 1}
        assert client.post("/v1/score", json=body).json()["model"] == "random"
    finally:
        write_current(home, "tfidf", home / "models" / "tfidf", "micro_f1", 0.5)


# -- helpers, without Serve ----------------------------------------------------------


def test_image_paths_stay_under_the_root(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"jpg")
    (tmp_path / "link.jpg").symlink_to("/etc/hostname")
    assert image_under_root(str(tmp_path), "a/x.jpg", "f") == str(tmp_path / "a/x.jpg")
    for bad, match in [
        ("../x.jpg", r"f: '\.\./x\.jpg' escapes the image root"),
        ("/etc/passwd", r"escapes the image root"),
        ("a/../../x", r"escapes the image root"),
        ("link.jpg", r"escapes the image root through a link"),
        ("a/none.jpg", r"no image at 'a/none\.jpg'"),
    ]:
        with pytest.raises(RequestError, match=match):
            image_under_root(str(tmp_path), bad, "f")
    with pytest.raises(RequestError, match=r"f: image paths are not accepted"):
        image_under_root(None, "a/x.jpg", "f")
    assert (
        image_under_root("s3://bucket/img", "a/x.jpg", "f") == "s3://bucket/img/a/x.jpg"
    )


def test_base64_images_are_decoded_within_the_limit():
    data = base64.b64encode(b"x" * 100).decode()
    assert decode_base64_image(data, 1024, "f") == b"x" * 100
    with pytest.raises(RequestError, match=r"f: the image is about 1500 bytes"):
        decode_base64_image("A" * 2000, 1024, "f")


@pytest.fixture
def tiny_taxonomy() -> Taxonomy:
    return Taxonomy.from_paths(
        [["Kitchen", "Mugs"], ["Kitchen", "Pans"], ["Watches", "Wrist"]]
    )


def test_labelstudio_predictions_follow_the_choice_mode(tiny_taxonomy):
    tax = tiny_taxonomy
    probs = np.zeros((1, len(tax)), dtype=np.float32)
    for path, p in [("Kitchen", 0.9), ("Kitchen > Mugs", 0.7), ("Watches", 0.2)]:
        probs[0, tax.ids.index(tax.resolve(path))] = p
    multiple = labelstudio.default_control(tax)
    out = labelstudio.predictions(
        probs, multiple, tax, threshold=0.5, model_version="v"
    )[0]
    assert out["result"][0]["value"]["choices"] == ["Kitchen", "Kitchen > Mugs"]
    assert out["score"] == pytest.approx(0.8)

    xml = (
        '<View><Text name="t" value="$title"/><Choices name="c" toName="t">'
        '<Choice value="Kitchen > Mugs"/><Choice value="Watches"/>'
        '<Choice value="Not a category"/></Choices></View>'
    )
    single = labelstudio.parse_label_config(xml, tax)
    assert (single.from_name, single.to_name, single.multiple) == ("c", "t", False)
    out = labelstudio.predictions(probs, single, tax, threshold=0.5, model_version="v")
    assert out[0]["result"][0]["value"]["choices"] == ["Kitchen > Mugs"]
    with pytest.raises(RequestError, match=r"label_config: no <Choices"):
        labelstudio.parse_label_config("<View><Text name='t'/></View>", tax)
    with pytest.raises(RequestError, match=r"label_config: not valid XML"):
        labelstudio.parse_label_config("<View>", tax)


def test_labelstudio_annotation_rejects_the_asked_category_only_when_unchosen(
    tiny_taxonomy,
):
    tax = tiny_taxonomy

    def event(choices: list[str], asked: str) -> dict:
        result = [{"type": "choices", "value": {"choices": choices}}]
        return {
            "action": "ANNOTATION_CREATED",
            "annotation": {"completed_by": {"email": "a@b.c"}, "result": result},
            "task": {"data": {"product_id": "p1", "category": asked}},
        }

    found = labelstudio.annotation_labels(event(["Kitchen > Mugs"], "Kitchen"), tax)
    assert found.labeler == "labelstudio:a@b.c"
    assert found.labels == [(tax.resolve("Kitchen > Mugs"), 1)]
    found = labelstudio.annotation_labels(event(["Kitchen"], "Kitchen > Pans"), tax)
    assert found.labels == [
        (tax.resolve("Kitchen"), 1),
        (tax.resolve("Kitchen > Pans"), 0),
    ]
    with pytest.raises(RequestError, match=r"annotation\.result\[0\]\.value\.choices"):
        labelstudio.annotation_labels(event(["Garden"], "Kitchen"), tax)
    skipped = event([], "Kitchen")
    skipped["annotation"]["was_cancelled"] = True
    assert labelstudio.annotation_labels(skipped, tax) is None


def test_the_online_rule_matcher_agrees_with_apply_rules(served, taxonomy):
    from raycat.rules import apply_rules, load_rules
    from raycat.serving.models import RuleMatcher

    config, _ = served
    rules = load_rules(config.dataset.rules, taxonomy)
    products = catalog(config)
    products.loc[0, "title"] = "Ünïcode Straße, wall-clock_ÉTÉ 3.0"
    expected = set(apply_rules(rules, products).itertuples(index=False, name=None))
    matched = RuleMatcher(rules).match(products)
    got = {
        (pid, rule, category)
        for pid, found in zip(products["product_id"], matched, strict=True)
        for rule, category in found
    }
    assert expected and got == expected


def test_the_token_check_without_a_token_configured():
    import asyncio
    import dataclasses

    from raycat.config import ServingConfig
    from raycat.serving.app import AppSettings, _Guard, require_token
    from raycat.serving.errors import AuthError

    settings = AppSettings("home", "catalog", None, None, ServingConfig(), None)
    saved = _Guard.settings
    try:
        _Guard.settings = settings
        with pytest.raises(AuthError, match=r"server has no token; set serving\.token"):
            asyncio.run(require_token("Bearer x"))
        _Guard.settings = dataclasses.replace(
            settings, serving=ServingConfig(auth="none")
        )
        asyncio.run(require_token(None))
    finally:
        _Guard.settings = saved


def test_serve_is_a_cli_command_and_the_job_parses_its_arguments():
    import subprocess
    import sys

    import typer

    from raycat.cli.serve import register

    app = typer.Typer()
    register(app)
    assert [c.name for c in app.registered_commands] == ["serve"]
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(repo / "jobs" / "serve.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--block" in out.stdout

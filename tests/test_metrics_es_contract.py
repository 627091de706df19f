"""Contract tests of the Elasticsearch metrics store.

A small HTTP server on 127.0.0.1 plays Elasticsearch 9: it records every
request the official client sends and answers as the REST API documents
(``GET /``, ``PUT _index_template``, ``POST _bulk``, ``_refresh``,
``_search``).  The tests pin what the client sent: the template, the bulk
NDJSON, the auth header, the index names; and how failures are handled.

One test runs against a real server when ``RAYCAT_TEST_ES_URL`` is set.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import pickle
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("elasticsearch")

from raycat.metrics import (
    MetricRecord,
    MetricsConfig,
    MetricsStoreError,
    open_metrics_store,
)
from raycat.metrics import elasticsearch as es_module
from raycat.metrics.elasticsearch import (
    ElasticsearchMetricsStore,
    redact_url,
)
from raycat.metrics.store import ElasticsearchConfig

API_KEY = "a2V5LWlkOmtleS1zZWNyZXQ="  # base64("key-id:key-secret")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def ndjson(self) -> list[dict]:
        return [json.loads(line) for line in self.body.decode().splitlines()]


class FakeElasticsearch:
    """Enough of the Elasticsearch 9 REST API for the metrics store."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.version = "9.1.3"
        self.product_header = True
        # Statuses to answer the next requests with, whatever they ask.
        self.fail_next: list[int] = []
        # Per-item statuses for the next bulk requests (201 = indexed).
        self.bulk_item_statuses: list[list[int]] = []
        self.docs: dict[str, dict[str, dict]] = {}
        self.templates: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def of(self, method: str, pattern: str) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.method == method and re.fullmatch(pattern, r.path)
        ]

    # -- the API ---------------------------------------------------------------

    def answer(self, req: Request) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(req)
            if self.fail_next:
                status = self.fail_next.pop(0)
                return status, _error(status, "fake_failure", "scripted failure")
        parts = [p for p in req.path.split("/") if p]

        if req.method in ("GET", "HEAD") and not parts:
            return 200, {
                "name": "fake-node",
                "cluster_name": "fake",
                "cluster_uuid": "fake-uuid",
                "version": {
                    "number": self.version,
                    "build_flavor": "default",
                    "lucene_version": "10.2.2",
                    "minimum_wire_compatibility_version": "8.19.0",
                    "minimum_index_compatibility_version": "8.0.0",
                },
                "tagline": "You Know, for Search",
            }
        if req.method == "PUT" and parts[:1] == ["_index_template"]:
            self.templates[parts[1]] = req.json()
            return 200, {"acknowledged": True}
        if req.method in ("POST", "PUT") and parts == ["_bulk"]:
            return 200, self._bulk(req)
        if parts[-1:] == ["_refresh"]:
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if parts[-1:] == ["_search"]:
            return 200, self._search(parts[0], req.json())
        return 404, _error(404, "not_found", f"no handler for {req.method} {req.path}")

    def _bulk(self, req: Request) -> dict:
        lines = req.ndjson()
        statuses = self.bulk_item_statuses.pop(0) if self.bulk_item_statuses else []
        items = []
        for i in range(0, len(lines), 2):
            action = lines[i]["index"]
            status = statuses[i // 2] if i // 2 < len(statuses) else 201
            result = {
                "_index": action["_index"],
                "_id": action["_id"],
                "status": status,
            }
            if status < 300:
                self.docs.setdefault(action["_index"], {})[action["_id"]] = lines[i + 1]
                result.update(result="created", _version=1)
            elif status == 429:
                result["error"] = {
                    "type": "es_rejected_execution_exception",
                    "reason": "rejected execution (queue capacity 200)",
                }
            else:
                result["error"] = {
                    "type": "document_parsing_exception",
                    "reason": "[1:42] failed to parse field [metrics.loss]",
                }
            items.append({"index": result})
        errors = any(item["index"]["status"] >= 300 for item in items)
        return {"took": 3, "errors": errors, "items": items}

    def _search(self, index: str, body: dict) -> dict:
        hits = []
        for name, docs in self.docs.items():
            if fnmatch.fnmatchcase(name, index):
                hits.extend((name, doc_id, doc) for doc_id, doc in docs.items())
        for clause in body["query"]["bool"]["filter"]:
            ((field, value),) = clause["term"].items()
            hits = [h for h in hits if h[2].get(field) == value]
        hits.sort(key=lambda h: (h[2]["time"], h[2]["record_id"]))
        if "search_after" in body:
            after = tuple(body["search_after"])
            hits = [h for h in hits if (h[2]["time"], h[2]["record_id"]) > after]
        page = hits[: body["size"]]
        return {
            "took": 1,
            "timed_out": False,
            "hits": {
                "total": {"value": len(hits), "relation": "eq"},
                "hits": [
                    {
                        "_index": name,
                        "_id": doc_id,
                        "_score": None,
                        "_source": doc,
                        "sort": [doc["time"], doc["record_id"]],
                    }
                    for name, doc_id, doc in page
                ],
            },
        }

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                req = Request(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                status, body = fake.answer(req)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type",
                    "application/vnd.elasticsearch+json;compatible-with=9",
                )
                if fake.product_header:
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

            def log_message(self, *args) -> None:
                pass

        return Handler


def _error(status: int, kind: str, reason: str) -> dict:
    return {"error": {"type": kind, "reason": reason}, "status": status}


@pytest.fixture
def fake_es():
    server = FakeElasticsearch()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_es_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("URL", "API_KEY", "USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"RAYCAT_ES_{name}", raising=False)


def es_config(url: str, **settings) -> MetricsConfig:
    settings.setdefault("api_key", API_KEY)
    # Retries in tests wait milliseconds, not seconds.
    settings.setdefault("retry_backoff_s", 0.01)
    return MetricsConfig.model_validate(
        {"backend": "elasticsearch", "elasticsearch": {"url": url, **settings}}
    )


def records() -> list[MetricRecord]:
    return [
        MetricRecord(
            run="tiny",
            pipeline="tune",
            component="linear",
            trial="t1",
            iteration=i,
            split="valid",
            kind="trial_result",
            metrics={"loss": 1.0 / i, "valid.f1": 0.5 + i / 10},
            params={"C": 0.5, "text": {"features": "tfidf"}},
            time=1_700_000_000.0 + i,
        )
        for i in (1, 2)
    ] + [
        MetricRecord(
            run="tiny",
            pipeline="train-pred",
            component="xgboost",
            split="test",
            kind="evaluation",
            metrics={"f1": 0.75},
            params={"max_depth": 6},
            time=1_700_000_010.5,
        )
    ]


# -- opening ----------------------------------------------------------------


def test_open_checks_the_server_and_installs_the_template(fake_es) -> None:
    with open_metrics_store(es_config(fake_es.url), "unused"):
        pass

    info, template = fake_es.requests
    assert (info.method, info.path) == ("GET", "/")
    assert info.headers["authorization"] == f"ApiKey {API_KEY}"
    assert (
        info.headers["accept"]
        == "application/vnd.elasticsearch+json; compatible-with=9"
    )

    assert (template.method, template.path) == (
        "PUT",
        "/_index_template/raycat-metrics",
    )
    body = template.json()
    assert body["index_patterns"] == ["raycat-*"]
    assert body["priority"] == 200
    assert body["_meta"]["managed_by"] == "raycat"
    mappings = body["template"]["mappings"]
    props = mappings["properties"]
    for name in ("record_id", "run", "pipeline", "component", "trial", "split", "kind"):
        assert props[name] == {"type": "keyword"}, name
    assert props["iteration"] == {"type": "long"}
    assert props["time"] == {"type": "date", "format": "epoch_millis"}
    assert props["metrics"] == {"type": "object", "dynamic": True, "subobjects": False}
    assert props["params"] == {"type": "flattened"}
    assert mappings["dynamic_templates"] == [
        {
            "metrics_as_double": {
                "path_match": "metrics.*",
                "mapping": {"type": "double"},
            }
        }
    ]


def test_basic_auth_from_the_environment(fake_es, monkeypatch) -> None:
    monkeypatch.setenv("RAYCAT_ES_URL", fake_es.url)
    monkeypatch.setenv("RAYCAT_ES_USERNAME", "raycat")
    monkeypatch.setenv("RAYCAT_ES_PASSWORD", "pa:ss")
    cfg = MetricsConfig.model_validate({"backend": "elasticsearch"})
    with open_metrics_store(cfg, "unused") as store:
        store.write(records()[:1])

    expected = "Basic " + base64.b64encode(b"raycat:pa:ss").decode()
    assert {r.headers["authorization"] for r in fake_es.requests} == {expected}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            {"version": "8.15.0"},
            r"is version 8\.15\.0, but the elasticsearch 9 Python client needs 9\.0 "
            "or later; upgrade the server, or use `metrics.backend: local`",
        ),
        (
            {"product_header": False},
            r"answered but is not Elasticsearch \(no X-Elastic-Product header\)",
        ),
        (
            {"fail_next": [401]},
            r"rejected the credentials \(HTTP 401\); set "
            r"metrics\.elasticsearch\.api_key",
        ),
    ],
)
def test_a_wrong_server_fails_at_open_with_a_fix(fake_es, setup, message) -> None:
    for name, value in setup.items():
        setattr(fake_es, name, value)
    with pytest.raises(MetricsStoreError, match=message):
        open_metrics_store(es_config(fake_es.url), "unused")


def test_an_unreachable_server_fails_fast_with_a_fix() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"  # nothing listens there any more

    start = time.monotonic()
    with pytest.raises(MetricsStoreError) as caught:
        open_metrics_store(es_config(url, max_retries=3), "unused")
    assert time.monotonic() - start < 5

    assert re.fullmatch(
        rf"cannot reach Elasticsearch at {re.escape(url)} \(ConnectionError: .*\); "
        "start the server, point metrics.elasticsearch.url or RAYCAT_ES_URL at a "
        "running one, or set `metrics.backend: local` to keep metrics in files "
        "under the run's home",
        str(caught.value),
    )


def test_messages_never_show_a_password_in_the_url() -> None:
    assert (
        redact_url("https://u:secret@es.example:9243/x") == "https://es.example:9243/x"
    )
    assert redact_url("http://127.0.0.1:9200") == "http://127.0.0.1:9200"


# -- writing ----------------------------------------------------------------


def test_write_sends_one_bulk_request_of_ndjson(fake_es) -> None:
    with open_metrics_store(es_config(fake_es.url), "unused") as store:
        assert store.write(records()) == 3

    (bulk,) = fake_es.of("PUT", "/_bulk")
    assert bulk.headers["content-type"] == (
        "application/vnd.elasticsearch+x-ndjson; compatible-with=9"
    )
    assert bulk.body.endswith(b"\n")
    lines = bulk.ndjson()
    actions, docs = lines[0::2], lines[1::2]
    assert [a["index"]["_index"] for a in actions] == [
        "raycat-tune",
        "raycat-tune",
        "raycat-train-pred",
    ]
    ids = [a["index"]["_id"] for a in actions]
    assert len(set(ids)) == 3
    assert [d["record_id"] for d in docs] == ids
    assert docs[0] == {
        "run": "tiny",
        "pipeline": "tune",
        "component": "linear",
        "trial": "t1",
        "iteration": 1,
        "split": "valid",
        "kind": "trial_result",
        "metrics": {"loss": 1.0, "valid.f1": 0.6},
        "params": {"C": 0.5, "text": {"features": "tfidf"}},
        "time": 1_700_000_001_000,
        "record_id": ids[0],
    }
    assert docs[2]["trial"] is None and docs[2]["iteration"] is None
    assert docs[2]["time"] == 1_700_000_010_500


def test_a_failed_bulk_request_is_retried(fake_es) -> None:
    with open_metrics_store(es_config(fake_es.url), "unused") as store:
        fake_es.fail_next = [500, 503]
        assert store.write(records()) == 3

    bulks = fake_es.of("PUT", "/_bulk")
    assert len(bulks) == 3
    # Resent with the same ids, so a retry never duplicates a record.
    assert bulks[0].body == bulks[1].body == bulks[2].body
    assert len(fake_es.docs["raycat-tune"]) == 2


def test_rejected_records_alone_are_resent(fake_es) -> None:
    with open_metrics_store(es_config(fake_es.url), "unused") as store:
        fake_es.bulk_item_statuses = [[201, 429, 201]]
        assert store.write(records()) == 3

    first, second = fake_es.of("PUT", "/_bulk")
    resent = second.ndjson()
    assert len(resent) == 2
    assert resent[0] == first.ndjson()[2]
    assert len(fake_es.docs["raycat-tune"]) == 2


def test_retries_end_with_a_clear_error(fake_es) -> None:
    with open_metrics_store(es_config(fake_es.url, max_retries=2), "unused") as store:
        fake_es.fail_next = [503] * 3
        with pytest.raises(
            MetricsStoreError,
            match=r"writing 3 metric records failed: Elasticsearch at http://127\.0\.0"
            r"\.1:\d+ answered HTTP 503 \(fake_failure\) 3 times; check the cluster's "
            "health, or raise metrics.elasticsearch.max_retries",
        ):
            store.write(records())
    assert len(fake_es.of("PUT", "/_bulk")) == 3


def test_records_rejected_for_good_raise(fake_es) -> None:
    with open_metrics_store(es_config(fake_es.url), "unused") as store:
        fake_es.bulk_item_statuses = [[201, 400, 201]]
        with pytest.raises(
            MetricsStoreError,
            match=r"rejected 1 of 3 metric records; the first, for index raycat-tune, "
            r"with HTTP 400: document_parsing_exception: \[1:42\] failed to parse",
        ):
            store.write(records())
    assert len(fake_es.of("PUT", "/_bulk")) == 1


# -- reading ----------------------------------------------------------------


def test_read_pages_through_a_search(fake_es, monkeypatch) -> None:
    monkeypatch.setattr(es_module, "PAGE_SIZE", 2)
    with open_metrics_store(es_config(fake_es.url), "unused") as store:
        store.write(records())
        everything = store.read()
        tuned = store.read(pipeline="tune", kind="trial_result")

    assert len(everything) == 3
    assert list(everything["time"]) == [
        1_700_000_001.0,
        1_700_000_002.0,
        1_700_000_010.5,
    ]
    assert list(tuned["iteration"]) == [1, 2]
    assert list(tuned["metric.valid.f1"]) == [0.6, 0.7]
    assert list(tuned["param.text.features"]) == ["tfidf", "tfidf"]

    refreshes = fake_es.of("POST", r"/.*/_refresh")
    assert [r.path for r in refreshes] == [
        "/raycat-*/_refresh",
        "/raycat-tune/_refresh",
    ]
    searches = fake_es.of("POST", r"/.*/_search")
    assert [r.path for r in searches] == [
        "/raycat-*/_search",
        "/raycat-*/_search",  # 1 hit after a full page of 2: the last page
        "/raycat-tune/_search",
        "/raycat-tune/_search",  # a full page may not be the last: asked again
    ]
    assert searches[0].query["ignore_unavailable"] == ["true"]
    assert searches[0].query["allow_no_indices"] == ["true"]
    first, second, filtered, _ = (r.json() for r in searches)
    assert first["sort"] == [
        {"time": {"order": "asc", "unmapped_type": "date"}},
        {"record_id": {"order": "asc", "unmapped_type": "keyword"}},
    ]
    assert first["size"] == 2 and "search_after" not in first
    assert second["search_after"][0] == 1_700_000_002_000
    assert filtered["query"] == {
        "bool": {
            "filter": [
                {"term": {"pipeline": "tune"}},
                {"term": {"kind": "trial_result"}},
            ]
        }
    }


# -- the Tune callback batches its writes ---------------------------------------


def test_callback_sends_bulk_batches(fake_es, tmp_path) -> None:
    from raycat.metrics.tune_callback import MetricsStoreCallback

    callback = MetricsStoreCallback(
        es_config(fake_es.url),
        tmp_path,
        run="tiny",
        pipeline="tune",
        component="linear",
        params_key="params",
        flush_records=2,
        flush_interval_s=3600,
    )
    assert fake_es.requests == []  # nothing is contacted before setup()
    callback.setup()
    # The copy Tune pickles with the experiment leaves the client behind.
    assert pickle.loads(pickle.dumps(callback))._store is None
    trial = SimpleNamespace(trial_id="abc_00001", config={"params": {"C": 2.0}})
    for i in range(1, 6):
        callback.on_trial_result(
            iteration=i,
            trials=[trial],
            trial=trial,
            result={"loss": 1 / i, "training_iteration": i, "pid": 4242, "done": False},
        )
    callback.on_trial_complete(iteration=6, trials=[trial], trial=trial)
    callback.on_experiment_end(trials=[trial])

    bulks = fake_es.of("PUT", "/_bulk")
    assert [len(b.ndjson()) // 2 for b in bulks] == [2, 2, 1]
    docs = [line for b in bulks for line in b.ndjson()[1::2]]
    assert [d["iteration"] for d in docs] == [1, 2, 3, 4, 5]
    assert docs[0]["metrics"] == {"loss": 1.0}
    assert docs[0]["params"] == {"C": 2.0}
    assert docs[0]["trial"] == "abc_00001"
    assert callback.records_written == 5


# -- a real server ----------------------------------------------------------


@pytest.mark.skipif(
    not os.environ.get("RAYCAT_TEST_ES_URL"),
    reason="no Elasticsearch server: set RAYCAT_TEST_ES_URL to run against a real "
    "one (none can run on the CI machines)",
)
def test_round_trip_on_a_real_server(monkeypatch) -> None:
    monkeypatch.setenv("RAYCAT_ES_URL", os.environ["RAYCAT_TEST_ES_URL"])
    for name in ("API_KEY", "USERNAME", "PASSWORD"):
        if os.environ.get(f"RAYCAT_TEST_ES_{name}"):
            monkeypatch.setenv(
                f"RAYCAT_ES_{name}", os.environ[f"RAYCAT_TEST_ES_{name}"]
            )
    prefix = f"raycat-test-{uuid.uuid4().hex[:8]}"
    config = ElasticsearchConfig(index_prefix=prefix)

    store = ElasticsearchMetricsStore(config)
    try:
        assert store.write(records()) == 3
        frame = store.read()
        assert len(frame) == 3
        tuned = store.read(pipeline="tune")
        assert list(tuned["metric.loss"]) == [1.0, 0.5]
        assert list(tuned["param.C"]) == [0.5, 0.5]
        mapping = store.client.indices.get_mapping(index=f"{prefix}-tune")
        props = mapping[f"{prefix}-tune"]["mappings"]["properties"]
        assert props["metrics"]["properties"]["valid.f1"]["type"] == "double"
        assert props["params"]["type"] == "flattened"
    finally:
        store.client.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
        store.client.indices.delete_index_template(name=f"{prefix}-metrics")
        store.close()

"""The metrics store in Elasticsearch: the only module that imports its client.

Records of pipeline ``p`` go to the index ``<index_prefix>-p`` (``raycat-tune``).
Opening the store

1. probes the server (``GET /``) with the short ``connect_timeout_s`` and no
   retries, so a server that is down fails at once with a message that says
   how to fix it, and checks that it is Elasticsearch 9 or later (the 9.x
   client cannot talk to older servers);
2. installs the index template ``<index_prefix>-metrics`` for
   ``<index_prefix>-*`` with explicit mappings (:func:`index_template`).

Writes are bulk requests.  Every record gets a fresh id once, so resending it
after a timeout or a rejection overwrites instead of duplicating.  Failures are
retried at two levels: the client retries a lost connection or a timeout
(``max_retries``, ``retry_on_timeout``) with jittered exponential backoff, and
this module retries a whole bulk request answered with 429 / 5xx, and the
single records a bulk answer rejected with 429 / 5xx, with the same backoff.

Documents store ``time`` as epoch milliseconds (a ``date``); :meth:`read`
turns it back into epoch seconds.  Reads refresh the indices first, so a read
right after a write sees it, then page through the hits with ``search_after``.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    Elasticsearch,
    SSLError,
    TransportError,
    UnsupportedProductError,
)

from raycat.metrics.store import (
    ElasticsearchConfig,
    MetricRecord,
    MetricsStore,
    MetricsStoreError,
    check_pipeline_name,
    records_to_frame,
)

logger = logging.getLogger(__name__)

TEMPLATE_VERSION = 1
"""The mappings below; bump it when they change (new indices pick them up)."""

# Above the priority 100 of Elasticsearch's built-in templates, so ours wins if
# a prefix ever overlaps with them.
TEMPLATE_PRIORITY = 200

# 429 is back-pressure (a full write queue); 5xx are mostly transient (a node
# restarting, a shard relocating).  Both are worth resending after a pause.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

BACKOFF_CAP_S = 30.0

# Hits per search page: search_after pages cost the same whatever the offset.
PAGE_SIZE = 1000

MIN_SERVER_MAJOR = 9

_T = TypeVar("_T")


def index_template(prefix: str) -> dict[str, Any]:
    """The body of ``PUT _index_template/<prefix>-metrics``."""
    keyword = {"type": "keyword"}
    return {
        "index_patterns": [f"{prefix}-*"],
        "priority": TEMPLATE_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "raycat", "description": "raycat metric records"},
        "template": {
            # Metric indices stay small (thousands of records per run).
            "settings": {"number_of_shards": 1},
            "mappings": {
                # Unknown top-level fields are kept in _source but not indexed,
                # so a newer raycat never has its records rejected.
                "dynamic": False,
                "dynamic_templates": [
                    {
                        "metrics_as_double": {
                            "path_match": "metrics.*",
                            "mapping": {"type": "double"},
                        }
                    }
                ],
                "properties": {
                    "record_id": keyword,
                    "run": keyword,
                    "pipeline": keyword,
                    "component": keyword,
                    "trial": keyword,
                    "iteration": {"type": "long"},
                    "split": keyword,
                    "kind": keyword,
                    "time": {"type": "date", "format": "epoch_millis"},
                    # Metric names with dots ("valid.f1") stay one field each,
                    # and every value is a double whatever its JSON form.
                    "metrics": {
                        "type": "object",
                        "dynamic": True,
                        "subobjects": False,
                    },
                    # Any hyperparameter, searchable as keywords, one field in
                    # the mapping however many the components have.
                    "params": {"type": "flattened"},
                },
            },
        },
    }


def redact_url(url: str) -> str:
    """``url`` without a user or password in it, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=host))


def backoff_s(attempt: int, base_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): doubling, jittered."""
    ceiling = min(BACKOFF_CAP_S, base_s * 2**attempt)
    # Half fixed, half random: writers that failed together do not retry in step.
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def make_client(config: ElasticsearchConfig) -> Elasticsearch:
    """A client for a resolved config (see :meth:`ElasticsearchConfig.resolved`)."""
    kwargs: dict[str, Any] = {
        "verify_certs": config.verify_certs,
        "request_timeout": config.request_timeout_s,
        "max_retries": config.max_retries,
        "retry_on_timeout": True,
        # The client resends 429/502/503/504 without pausing; this module does
        # that itself with backoff, so the client only retries lost connections.
        "retry_on_status": (),
        "retry_backoff_base": config.retry_backoff_s,
        "retry_backoff_cap": BACKOFF_CAP_S,
    }
    if config.ca_certs:
        kwargs["ca_certs"] = config.ca_certs
    if config.api_key is not None:
        kwargs["api_key"] = config.api_key.get_secret_value()
    elif config.username and config.password is not None:
        kwargs["basic_auth"] = (config.username, config.password.get_secret_value())
    try:
        return Elasticsearch(config.url, **kwargs)
    except ValueError as err:
        raise MetricsStoreError(
            f"metrics.elasticsearch.url {redact_url(str(config.url))!r} is not a "
            f"usable URL ({err}); write it as http(s)://host:port, e.g. "
            "https://localhost:9200"
        ) from None


class ElasticsearchMetricsStore(MetricsStore):
    """Metric records in ``<index_prefix>-<pipeline>`` indices.

    Args:
        config: the ``metrics.elasticsearch`` section; what it leaves out comes
            from the ``RAYCAT_ES_*`` environment variables.
        client: an existing client to use instead of making one from
            ``config`` (its URL still names the server in messages); it is
            left open by :meth:`close`.
    """

    def __init__(
        self, config: ElasticsearchConfig, *, client: Elasticsearch | None = None
    ) -> None:
        self.config = config.resolved()
        self.url = redact_url(str(self.config.url))
        self.prefix = self.config.index_prefix
        # A client passed in belongs to the caller, who closes it.
        self._owns_client = client is None
        self._client: Elasticsearch | None = client or make_client(self.config)
        try:
            self._check_server()
            self._install_template()
        except BaseException:
            self.close()
            raise

    # -- opening ------------------------------------------------------------

    @property
    def client(self) -> Elasticsearch:
        if self._client is None:
            raise MetricsStoreError(
                "the Elasticsearch metrics store is closed; open a new one with "
                "open_metrics_store()"
            )
        return self._client

    def _unreachable(self, err: Exception) -> MetricsStoreError:
        if isinstance(err, SSLError):
            return MetricsStoreError(
                f"TLS connection to Elasticsearch at {self.url} failed ({err}); set "
                "metrics.elasticsearch.ca_certs to the cluster's CA file (e.g. "
                "http_ca.crt), or verify_certs: false for a test server"
            )
        return MetricsStoreError(
            f"cannot reach Elasticsearch at {self.url} ({type(err).__name__}: "
            f"{err}); start the server, point metrics.elasticsearch.url or "
            "RAYCAT_ES_URL at a running one, or set `metrics.backend: local` to keep "
            "metrics in files under the run's home"
        )

    def _check_server(self) -> None:
        probe = self.client.options(
            request_timeout=self.config.connect_timeout_s, max_retries=0
        )
        try:
            info = probe.info()
        except AuthenticationException:
            raise MetricsStoreError(
                f"Elasticsearch at {self.url} rejected the credentials (HTTP 401); "
                "set metrics.elasticsearch.api_key (or RAYCAT_ES_API_KEY), or "
                "username and password (RAYCAT_ES_USERNAME / RAYCAT_ES_PASSWORD), "
                "to a valid login"
            ) from None
        except AuthorizationException:
            # Keys limited to index privileges may not call GET /; writes will
            # tell whether they may write.
            logger.warning(
                "the Elasticsearch login may not read the server info at %s "
                "(HTTP 403); its version is not checked",
                self.url,
            )
            return
        except UnsupportedProductError:
            raise MetricsStoreError(
                f"the server at {self.url} answered but is not Elasticsearch (no "
                "X-Elastic-Product header); check metrics.elasticsearch.url or "
                "RAYCAT_ES_URL"
            ) from None
        except ApiError as err:
            hint = (
                "; a 400 here usually means Elasticsearch older than 9, which the "
                "elasticsearch 9 Python client cannot talk to"
                if err.meta.status == 400
                else ""
            )
            raise MetricsStoreError(
                f"Elasticsearch at {self.url} answered GET / with HTTP "
                f"{err.meta.status}: {err.message}{hint}"
            ) from None
        except TransportError as err:
            raise self._unreachable(err) from None

        version = str(info.get("version", {}).get("number", ""))
        major = version.split(".", 1)[0]
        if major.isdigit() and int(major) < MIN_SERVER_MAJOR:
            raise MetricsStoreError(
                f"Elasticsearch at {self.url} is version {version}, but the "
                f"elasticsearch 9 Python client needs {MIN_SERVER_MAJOR}.0 or later; "
                "upgrade the server, or use `metrics.backend: local`"
            )
        logger.info("metrics go to Elasticsearch %s at %s", version, self.url)

    def _install_template(self) -> None:
        name = f"{self.prefix}-metrics"
        body = index_template(self.prefix)
        try:
            self._with_retries(
                f"installing the index template {name}",
                lambda: self.client.indices.put_index_template(
                    name=name,
                    index_patterns=body["index_patterns"],
                    priority=body["priority"],
                    version=body["version"],
                    meta=body["_meta"],
                    template=body["template"],
                ),
            )
        except AuthorizationException:
            logger.warning(
                "the Elasticsearch login may not install the index template %s "
                "(HTTP 403); new %s-* indices get dynamic mappings unless an admin "
                "installs it (raycat.metrics.elasticsearch.index_template)",
                name,
                self.prefix,
            )

    # -- retries ------------------------------------------------------------

    def _with_retries(self, what: str, call: Callable[[], _T]) -> _T:
        """``call()``, resent with backoff while it is answered 429 / 5xx."""
        for attempt in range(self.config.max_retries + 1):
            try:
                return call()
            except ApiError as err:
                if err.meta.status not in RETRY_STATUSES:
                    raise
                if attempt >= self.config.max_retries:
                    raise MetricsStoreError(
                        f"{what} failed: Elasticsearch at {self.url} answered HTTP "
                        f"{err.meta.status} ({err.message}) {attempt + 1} times; check "
                        "the cluster's health, or raise "
                        "metrics.elasticsearch.max_retries"
                    ) from None
                delay = backoff_s(attempt, self.config.retry_backoff_s)
                logger.warning(
                    "%s: HTTP %s from %s; retrying in %.2f s",
                    what,
                    err.meta.status,
                    self.url,
                    delay,
                )
                time.sleep(delay)
            except TransportError as err:
                raise self._unreachable(err) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- writing ------------------------------------------------------------

    def index_name(self, pipeline: str) -> str:
        return f"{self.prefix}-{check_pipeline_name(pipeline)}"

    def write(self, records: Iterable[MetricRecord]) -> int:
        pending = [
            (self.index_name(r.pipeline), uuid.uuid4().hex, _to_document(r))
            for r in records
        ]
        total = len(pending)
        if not total:
            return 0

        for attempt in range(self.config.max_retries + 1):
            operations: list[dict[str, Any]] = []
            for index, doc_id, doc in pending:
                operations.append({"index": {"_index": index, "_id": doc_id}})
                operations.append({**doc, "record_id": doc_id})
            answer = self._with_retries(
                f"writing {len(pending)} metric records",
                lambda ops=operations: self.client.bulk(operations=ops),
            )
            if not answer.get("errors"):
                return total

            retry, failed = _split_failures(pending, answer.get("items", []))
            if failed:
                index, status, error = failed[0]
                raise MetricsStoreError(
                    f"Elasticsearch at {self.url} rejected {len(failed)} of {total} "
                    f"metric records; the first, for index {index}, with HTTP "
                    f"{status}: {error}.  A mapping error means the index was made "
                    f"without raycat's template: delete the {self.prefix}-* index "
                    "or use a new metrics.elasticsearch.index_prefix"
                )
            if not retry:
                return total
            if attempt >= self.config.max_retries:
                break
            delay = backoff_s(attempt, self.config.retry_backoff_s)
            logger.warning(
                "Elasticsearch at %s pushed back on %d of %d metric records; "
                "resending them in %.2f s",
                self.url,
                len(retry),
                total,
                delay,
            )
            time.sleep(delay)
            pending = retry

        raise MetricsStoreError(
            f"Elasticsearch at {self.url} still rejected {len(pending)} of {total} "
            f"metric records after {self.config.max_retries} retries (it is "
            "overloaded: HTTP 429 / 5xx); check the cluster's health, or raise "
            "metrics.elasticsearch.max_retries or retry_backoff_s"
        )

    # -- reading ------------------------------------------------------------

    def read(
        self,
        *,
        pipeline: str | None = None,
        component: str | None = None,
        kind: str | None = None,
        run: str | None = None,
    ) -> pd.DataFrame:
        index = self.index_name(pipeline) if pipeline else f"{self.prefix}-*"
        filters = [
            {"term": {name: value}}
            for name, value in (
                ("pipeline", pipeline),
                ("component", component),
                ("kind", kind),
                ("run", run),
            )
            if value is not None
        ]
        # A missing index (nothing written yet) is an empty answer, not an error.
        missing_ok = {"ignore_unavailable": True, "allow_no_indices": True}
        try:
            self._with_retries(
                f"refreshing {index}",
                lambda: self.client.indices.refresh(index=index, **missing_ok),
            )
        except AuthorizationException:
            # Refreshing needs the "maintenance" privilege; without it, records
            # written in the last second (the refresh interval) may be missing.
            logger.warning(
                "the Elasticsearch login may not refresh %s (HTTP 403); the "
                "newest records may be missing from this read",
                index,
            )
        records: list[MetricRecord] = []
        skipped = 0
        for source in self._search(index, filters):
            try:
                records.append(_from_document(source))
            except (ValueError, TypeError, MetricsStoreError) as err:
                skipped += 1
                logger.debug("unreadable metric document in %s: %s", index, err)
        if skipped:
            logger.warning(
                "skipped %d metric documents in %s that are not raycat records",
                skipped,
                index,
            )
        return records_to_frame(records)

    def _search(self, index: str, filters: list[dict]) -> Iterator[dict[str, Any]]:
        after: list[Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "index": index,
                "query": {"bool": {"filter": filters}},
                # unmapped_type: another index under the prefix without these
                # fields sorts last instead of failing the search.
                "sort": [
                    {"time": {"order": "asc", "unmapped_type": "date"}},
                    {"record_id": {"order": "asc", "unmapped_type": "keyword"}},
                ],
                "size": PAGE_SIZE,
                "ignore_unavailable": True,
                "allow_no_indices": True,
            }
            if after is not None:
                kwargs["search_after"] = after
            answer = self._with_retries(
                f"searching {index}", lambda kw=kwargs: self.client.search(**kw)
            )
            hits = answer.get("hits", {}).get("hits", [])
            for hit in hits:
                yield hit["_source"]
            if len(hits) < PAGE_SIZE:
                return
            after = hits[-1]["sort"]

    def close(self) -> None:
        if self._client is not None and self._owns_client:
            self._client.close()
        self._client = None


def _to_document(record: MetricRecord) -> dict[str, Any]:
    doc = record.to_dict()
    doc["time"] = round(record.time * 1000)
    return doc


def _from_document(source: dict[str, Any]) -> MetricRecord:
    data = dict(source)
    data.pop("record_id", None)
    data["time"] = float(data.get("time", 0)) / 1000
    return MetricRecord.from_dict(data)


def _split_failures(
    pending: list[tuple[str, str, dict]], items: list[dict]
) -> tuple[list[tuple[str, str, dict]], list[tuple[str, int, str]]]:
    """The records to resend, and the ones rejected for good (index, status, why)."""
    retry: list[tuple[str, str, dict]] = []
    failed: list[tuple[str, int, str]] = []
    for entry, item in zip(pending, items, strict=False):
        result = next(iter(item.values()), {})
        status = int(result.get("status", 200))
        if status < 300:
            continue
        if status in RETRY_STATUSES:
            retry.append(entry)
        else:
            error = result.get("error", {})
            reason = (
                f"{error.get('type')}: {error.get('reason')}"
                if isinstance(error, dict)
                else str(error)
            )
            failed.append((entry[0], status, reason))
    return retry, failed

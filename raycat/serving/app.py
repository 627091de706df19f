"""The Ray Serve app: a model deployment behind a FastAPI ingress.

Two deployments, composed with ``.bind()``:

- :class:`Scorer` holds the run's current model (:mod:`raycat.serving.models`)
  and scores the products of concurrent calls together (``@serve.batch``); it
  checks ``current.json`` every ``serving.model_refresh_s`` seconds and swaps
  in a new model without a restart;
- :class:`Api`, the HTTP ingress: ``/v1/score``, ``/v1/queue``,
  ``/v1/labels``, ``/v1/images/{product_id}``, ``/v1/model``, ``/healthz``, the
  Label Studio ML-backend routes (``/setup``, ``/predict``, ``/health``,
  ``/webhook``), the labeling page at ``/`` and the OpenAPI docs at ``/docs``.

Write endpoints (queue reservations, labels, the webhook) need
``Authorization: Bearer <token>``.  Handle calls skip FastAPI's validation, so
the ingress validates every request and passes the scorer plain product dicts.

:func:`build_app` makes the application from a pipeline config; :func:`start`
runs it on the Ray instance this process is connected to.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
annotations at run time, and Serve's class-based ingress cannot resolve them as
strings.
"""

import asyncio
import hmac
import logging
import mimetypes
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import numpy as np
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.serve.handle import DeploymentHandle

from raycat.config import PipelineConfig, ServingConfig, is_uri
from raycat.errors import LabelError, RaycatError
from raycat.run import RunPaths
from raycat.serving import labelstudio
from raycat.serving.desk import (
    CatalogLookup,
    LabelDesk,
    decode_base64_image,
    fetch_image,
    image_under_root,
    resolve_decisions,
)
from raycat.serving.errors import AuthError, RequestError, ServingError
from raycat.serving.models import (
    ModelSet,
    ScoredBatch,
    load_model_set,
    model_version,
    products_frame,
)
from raycat.serving.schemas import (
    LabelsRequest,
    LabelsResponse,
    ModelInfo,
    QueuePage,
    ScoreRequest,
    ScoreResponse,
)
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
APP_NAME = "raycat"
TOKEN_ENV = "RAYCAT_SERVE_TOKEN"


@dataclass(frozen=True)
class AppSettings:
    """What the deployments need from the pipeline config, resolved once on the
    driver (paths are absolute; the token is read from the environment here)."""

    home: str
    catalog: str
    image_root: str | None
    rules: str | None
    serving: ServingConfig
    token: str | None

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "AppSettings":
        serving = config.serving
        token = serving.token or os.environ.get(TOKEN_ENV) or None
        if serving.auth == "token" and not token:
            logger.warning(
                "serving: no token (serving.token or %s); write endpoints answer "
                "503 until one is set, or set serving.auth: none",
                TOKEN_ENV,
            )
        return cls(
            home=str(config.home),
            catalog=str(RunPaths(Path(config.home)).catalog),
            image_root=config.dataset.catalog.image_root,
            rules=config.dataset.rules,
            serving=serving,
            token=token,
        )


# -- the model deployment -----------------------------------------------------


class Scorer:
    """The current model; concurrent calls are scored as one batch."""

    def __init__(self, settings: AppSettings):
        self._settings = settings
        self._models: ModelSet = load_model_set(settings.home, settings.rules)
        self._checked = time.monotonic()
        self._reload_lock = asyncio.Lock()
        self._reload_error: str | None = None
        self._batch_calls: Counter[int] = Counter()
        self._stats = {"batches": 0, "calls": 0, "products": 0, "max_batch_calls": 0}
        self._score_batch.set_max_batch_size(settings.serving.batch_max_size)
        self._score_batch.set_batch_wait_timeout_s(settings.serving.batch_wait_s)

    async def _refresh(self, force: bool = False) -> None:
        """Swap in a new current model when ``current.json`` changed."""
        every = self._settings.serving.model_refresh_s
        if not force and time.monotonic() - self._checked < every:
            return
        self._checked = time.monotonic()
        async with self._reload_lock:
            try:
                version, path = await asyncio.to_thread(
                    model_version, self._settings.home
                )
                if version == self._models.version and path == self._models.path:
                    return
                logger.info("new current model %s (%s): loading it", path, version)
                self._models = await asyncio.to_thread(
                    load_model_set, self._settings.home, self._settings.rules
                )
                self._reload_error = None
            except Exception as err:  # keep serving the model we have
                self._reload_error = f"{type(err).__name__}: {err}"
                logger.warning(
                    "could not load the new current model, still serving %s: %s",
                    self._models.version,
                    self._reload_error,
                )

    async def score(self, products: list[dict[str, Any]]) -> dict[str, Any]:
        """Score validated product dicts (``image``: a path, bytes or None)."""
        await self._refresh()
        return await self._score_batch(products)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _score_batch(
        self, calls: list[list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        models = self._models
        flat = [p for call in calls for p in call]
        # The model runs on a thread so that the next batch gathers meanwhile.
        scored = await asyncio.to_thread(_score_products, models, flat)

        self._stats["batches"] += 1
        self._stats["calls"] += len(calls)
        self._stats["products"] += len(flat)
        self._stats["max_batch_calls"] = max(self._stats["max_batch_calls"], len(calls))
        self._batch_calls[len(calls)] += 1

        out, start = [], 0
        for call in calls:
            out.append(
                {
                    "model": models.name,
                    "version": models.version,
                    "components": list(models.components),
                    "scored": scored.rows(start, start + len(call)),
                }
            )
            start += len(call)
        return out

    async def info(self, refresh: bool = True) -> dict[str, Any]:
        if refresh:
            await self._refresh()
        models = self._models
        return {
            "model": models.name,
            "model_version": models.version,
            "path": models.path,
            "components": list(models.components),
            "text": models.text,
            "image": models.image,
            "uses_images": models.uses_images,
            "stats": {
                **self._stats,
                "calls_per_batch": {
                    str(k): v for k, v in sorted(self._batch_calls.items())
                },
                "reload_error": self._reload_error,
            },
            "batching": {
                "max_batch_size": self._score_batch._get_max_batch_size(),
                "batch_wait_timeout_s": self._score_batch._get_batch_wait_timeout_s(),
            },
        }

    async def set_batching(
        self, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        """Change this replica's batching (``max_batch_size`` 1 turns it off);
        for benchmarks and tuning, until the replica restarts."""
        self._score_batch.set_max_batch_size(int(max_batch_size))
        self._score_batch.set_batch_wait_timeout_s(float(batch_wait_timeout_s))

    async def reset_stats(self) -> None:
        self._stats = dict.fromkeys(self._stats, 0)
        self._batch_calls.clear()

    def check_health(self) -> None:
        if self._models is None:  # pragma: no cover - __init__ raises first
            raise ServingError("no model loaded")


def _score_products(models: ModelSet, products: list[dict[str, Any]]) -> ScoredBatch:
    with tempfile.TemporaryDirectory(prefix="raycat-serve-") as tmp:
        return models.score(products_frame(products, tmp))


# -- the HTTP ingress ----------------------------------------------------------

api = FastAPI(
    title="raycat scoring",
    description=(
        "Online scores for the labeling tool: the current model's category "
        "probabilities, its components', the old rules; the labeling queue and "
        "labels; a Label Studio ML backend."
    ),
    docs_url="/docs",
)
api.mount("/static", StaticFiles(directory=STATIC), name="static")


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "header", "path")]
    name = ""
    for p in parts:
        name += f"[{p}]" if p.isdigit() else (f".{p}" if name else p)
    return name or "body"


@api.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": _field_name(tuple(e["loc"])), "message": e["msg"]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


@api.exception_handler(RequestError)
async def _refused(_: Request, exc: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return JSONResponse(
        {"detail": str(exc), "errors": [{"field": exc.field, "message": exc.message}]},
        status_code=exc.status_code,
        headers=headers,
    )


@api.exception_handler(LabelError)
async def _bad_labels(_: Request, exc: LabelError) -> JSONResponse:
    return JSONResponse({"detail": f"labels: {exc}"}, status_code=422)


@api.exception_handler(RaycatError)
async def _unavailable(_: Request, exc: RaycatError) -> JSONResponse:
    logger.warning("request failed: %s", exc)
    return JSONResponse({"detail": str(exc)}, status_code=503)


class _Guard:
    """The write endpoints' token check.  FastAPI runs dependencies before it
    validates the body, so a request without a token gets 401, never a 422
    that describes the API; :class:`Api` sets the settings when its replica
    starts (one ingress per replica process)."""

    settings: AppSettings | None = None


async def require_token(
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    settings = _Guard.settings
    if settings is None:  # pragma: no cover - set before any request
        raise AuthError(503, "the app is starting; retry in a moment")
    if settings.serving.auth == "none":
        return
    token = settings.token
    if not token:
        raise AuthError(
            503,
            "write endpoints are off: the server has no token; set "
            f"serving.token or {TOKEN_ENV}, or serving.auth: none",
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise AuthError(401, "missing; send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise AuthError(401, "the bearer token is not valid")


WRITE = Depends(require_token)


class Endpoints:
    """The HTTP endpoints; scoring goes to the :class:`Scorer` deployment.

    :data:`Api` is this class wrapped as Serve's ingress.  The class keeps its
    own module-level name so that Ray pickles it by reference: a copy pickled by
    value would run with only part of this module's globals.
    """

    def __init__(self, scorer: DeploymentHandle, settings: AppSettings):
        self._scorer = scorer
        self._settings = settings
        self._serving = settings.serving
        _Guard.settings = settings
        self._taxonomy = Taxonomy.load(RunPaths(Path(settings.home)).taxonomy)
        self._ancestors = {
            c: set(self._taxonomy.ancestors(c)) for c in self._taxonomy.ids
        }
        self._desk = LabelDesk(settings.home, self._taxonomy)
        self._catalog = CatalogLookup(settings.catalog)
        self._prefix = settings.serving.route_prefix.rstrip("/")
        self._http: Any = None
        self._ls_control = labelstudio.default_control(self._taxonomy)

    def __del__(self) -> None:
        desk = getattr(self, "_desk", None)
        if desk is not None:
            desk.close()

    # -- helpers -------------------------------------------------------------

    async def _client(self) -> Any:
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(
                timeout=self._serving.image_fetch_timeout_s, follow_redirects=True
            )
        return self._http

    async def _image(self, ref: Any, field: str) -> str | bytes | None:
        limit = self._serving.max_image_bytes
        if ref is None:
            return None
        if ref.path:
            return image_under_root(
                self._settings.image_root, ref.path, f"{field}.path"
            )
        if ref.base64:
            return decode_base64_image(ref.base64, limit, f"{field}.base64")
        if not self._serving.allow_image_urls:
            raise RequestError(
                422,
                f"{field}.url",
                "image URLs are turned off (serving.allow_image_urls: false); send "
                "a path or base64",
            )
        return await fetch_image(await self._client(), ref.url, limit, f"{field}.url")

    def _rule_flags(self, matches: list[tuple[str, str]]) -> set[str]:
        flagged: set[str] = set()
        for _, cid in matches:
            flagged.add(cid)
            flagged |= self._ancestors[cid]
        return flagged

    def _rules(self, matches: list[tuple[str, str]]) -> list[dict[str, str]]:
        return [
            {"rule": r, "category": c, "path": self._taxonomy.path_str(c)}
            for r, c in matches
        ]

    def _categories(
        self,
        scored: ScoredBatch,
        row: int,
        *,
        min_probability: float = 0.0,
        top_k: int | None = None,
        components: bool = True,
    ) -> list[dict[str, Any]]:
        ids = self._taxonomy.ids
        p = scored.probability[row]
        order = np.argsort(-p, kind="stable")
        order = order[p[order] >= min_probability]
        if top_k is not None:
            order = order[:top_k]
        flagged = self._rule_flags(scored.rules[row])
        out = []
        for j in order.tolist():
            cid = ids[j]
            entry: dict[str, Any] = {
                "category": cid,
                "path": self._taxonomy.path_str(cid),
                "probability": round(float(p[j]), 6),
                "entropy": round(float(scored.entropy[row, j]), 6),
                "disagreement": None
                if scored.disagreement is None
                else round(float(scored.disagreement[row, j]), 6),
                "rule": cid in flagged,
            }
            if components:
                entry["components"] = {
                    name: round(float(v[row, j]), 6)
                    for name, v in scored.components.items()
                }
            out.append(entry)
        return out

    def _check_count(self, n: int, field: str) -> None:
        limit = self._serving.max_products_per_request
        if n > limit:
            raise RequestError(
                413,
                field,
                f"{n} products in one request; the limit is "
                f"serving.max_products_per_request = {limit}; split the request",
            )

    # -- pages and health ------------------------------------------------------

    @api.get("/", include_in_schema=False, response_model=None)
    async def page(self, request: Request) -> Response:
        # The page loads its files and the API by relative URLs, which resolve
        # under the route prefix only from a URL that ends with a slash.
        if not request.url.path.endswith("/"):
            return RedirectResponse(request.url.path + "/")
        return FileResponse(STATIC / "index.html")

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        info = await self._scorer.info.remote(refresh=False)
        return {"status": "ok", "model_version": info["model_version"]}

    @api.get("/v1/model", response_model=ModelInfo)
    async def model(self) -> dict[str, Any]:
        info = await self._scorer.info.remote()
        info["categories"] = [
            {
                "id": c,
                "path": self._taxonomy.path_str(c),
                "leaf": self._taxonomy[c].is_leaf,
            }
            for c in self._taxonomy.ids
        ]
        return info

    # -- scoring ---------------------------------------------------------------

    @api.post(
        "/v1/score",
        response_model=ScoreResponse,
        responses={413: {"description": "too many products or too large an image"}},
    )
    async def score(self, body: ScoreRequest) -> JSONResponse:
        self._check_count(len(body.products), "products")
        images = await asyncio.gather(
            *(
                self._image(p.image, f"products[{i}].image")
                for i, p in enumerate(body.products)
            )
        )
        products = [
            {
                "product_id": p.product_id or str(i),
                "title": p.title,
                "description": p.description,
                "extra_text": p.extra_text,
                "colour": p.colour,
                "image": image,
            }
            for i, (p, image) in enumerate(zip(body.products, images, strict=True))
        ]
        result = await self._scorer.score.remote(products)
        scored: ScoredBatch = result["scored"]
        out = []
        for i, product in enumerate(products):
            out.append(
                {
                    "product_id": product["product_id"],
                    "categories": self._categories(
                        scored,
                        i,
                        min_probability=body.min_probability,
                        top_k=body.top_k,
                        components=body.include_components,
                    ),
                    "rules": self._rules(scored.rules[i]),
                }
            )
        # Built as plain JSON: validating thousands of entries again would cost
        # more than the model call; the schema above documents the shape.
        return JSONResponse(
            {
                "model": result["model"],
                "model_version": result["version"],
                "components": result["components"],
                "products": out,
            }
        )

    # -- the labeling queue and labels ----------------------------------------

    @api.get("/v1/queue", response_model=QueuePage, dependencies=[WRITE])
    async def queue(
        self,
        labeler: Annotated[str, Query(min_length=1, max_length=100)],
        size: Annotated[int | None, Query(ge=1)] = None,
    ) -> JSONResponse:
        size = size or self._serving.page_size
        if size > self._serving.max_page_size:
            raise RequestError(
                422,
                "size",
                f"{size} items asked; at most serving.max_page_size = "
                f"{self._serving.max_page_size} per page",
            )
        ttl_s = self._serving.reservation_ttl_s
        items = await self._desk.reserve(labeler, size, ttl_s)
        ids = [str(p) for p in items["product_id"]]
        rows = await self._catalog.rows_async(ids)
        version = None
        scored = None
        if ids:
            products = [
                {
                    **(rows.get(pid) or {}),
                    "product_id": pid,
                    "image": _local(rows.get(pid)),
                }
                for pid in ids
            ]
            result = await self._scorer.score.remote(products)
            scored, version = result["scored"], result["version"]
        if version is None:
            version = (await self._scorer.info.remote(refresh=False))["model_version"]

        page = []
        for i, item in enumerate(items.to_dict("records")):
            pid = ids[i]
            row = rows.get(pid) or {}
            asked = str(item["category"])
            page.append(
                {
                    "product_id": pid,
                    "iteration": int(item["iteration"]),
                    "title": row.get("title") or "",
                    "description": row.get("description") or "",
                    "image_url": f"{self._prefix}/v1/images/{quote(pid, safe='')}"
                    if row.get("image")
                    else None,
                    "asked": {
                        "category": asked,
                        "path": self._taxonomy.path_str(asked),
                        "strategy": str(item["strategy"]),
                        "p_model": _number(item.get("p_model")),
                        "rule_positive": _flag(item.get("rule_positive")),
                    },
                    "also_for": [str(c) for c in (item.get("also_for") or [])],
                    "top": [
                        {k: c[k] for k in ("category", "path", "probability", "rule")}
                        for c in self._categories(
                            scored, i, top_k=self._serving.page_top_k, components=False
                        )
                    ],
                    "rules": self._rules(scored.rules[i]),
                    "reserved_until": _number(item.get("reserved_until")),
                }
            )
        return JSONResponse(
            {
                "labeler": labeler,
                "model_version": version,
                "reservation_ttl_s": ttl_s,
                "items": page,
            }
        )

    @api.post("/v1/labels", response_model=LabelsResponse, dependencies=[WRITE])
    async def labels(
        self,
        body: LabelsRequest,
    ) -> dict[str, Any]:
        self._check_count(len({x.product_id for x in body.labels}), "labels")
        decisions = resolve_decisions(
            self._taxonomy,
            ((x.product_id, x.category, x.value, x.iteration) for x in body.labels),
        )
        done = await self._desk.submit(body.labeler, decisions)
        return {
            "labeler": body.labeler,
            "saved": done.saved,
            "rows": done.rows,
            "completed": done.completed,
        }

    @api.get("/v1/images/{product_id}", response_model=None)
    async def image(self, product_id: str) -> Response:
        row = (await self._catalog.rows_async([product_id])).get(product_id)
        location = (row or {}).get("image")
        if not location:
            raise RequestError(
                404, "product_id", f"no image for product {product_id!r}"
            )
        if location.startswith(("http://", "https://")):
            return RedirectResponse(location)
        if is_uri(location):
            from raycat.images import read_bytes

            data = await asyncio.to_thread(read_bytes, location)
            kind = mimetypes.guess_type(location)[0] or "application/octet-stream"
            return Response(data, media_type=kind)
        if not Path(location).is_file():
            raise RequestError(
                404, "product_id", f"the image of {product_id!r} is missing on disk"
            )
        return FileResponse(location, headers={"Cache-Control": "max-age=3600"})

    # -- Label Studio ML backend ----------------------------------------------

    @api.get("/v1/labelstudio/config", response_class=Response)
    async def labelstudio_config(self) -> Response:
        """A Label Studio label config with one choice per category."""
        return Response(labelstudio.label_config(self._taxonomy), media_type="text/xml")

    @api.get("/health")
    async def ls_health(self) -> dict[str, Any]:
        info = await self._scorer.info.remote(refresh=False)
        return {
            "status": "UP",
            "model_class": "raycat",
            "model_version": info["model_version"],
        }

    @api.post("/setup")
    async def ls_setup(self, request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        if body.get("schema"):
            self._ls_control = labelstudio.parse_label_config(
                body["schema"], self._taxonomy
            )
        info = await self._scorer.info.remote()
        return {"model_version": info["model_version"]}

    @api.post("/predict")
    async def ls_predict(self, request: Request) -> dict[str, Any]:
        body = await _json_object(request)
        tasks = body.get("tasks")
        self._check_count(len(tasks) if isinstance(tasks, list) else 0, "tasks")
        control = (
            labelstudio.parse_label_config(body["label_config"], self._taxonomy)
            if body.get("label_config")
            else self._ls_control
        )
        ids = [
            str((t.get("data") or {}).get("product_id") or "")
            for t in (tasks or [])
            if isinstance(t, dict)
        ]
        rows = await self._catalog.rows_async([i for i in ids if i])
        products = labelstudio.task_products(tasks, rows)
        for product in products:
            product["image"] = _local(product)
        result = await self._scorer.score.remote(products)
        results = labelstudio.predictions(
            result["scored"].probability,
            control,
            self._taxonomy,
            threshold=self._serving.labelstudio_threshold,
            model_version=result["version"],
        )
        return {"results": results, "model_version": result["version"]}

    @api.post("/webhook", dependencies=[WRITE])
    async def ls_webhook(
        self,
        request: Request,
    ) -> dict[str, Any]:
        payload = await _json_object(request)
        found = labelstudio.annotation_labels(payload, self._taxonomy)
        if found is None:
            return {"status": "ignored", "action": payload.get("action")}
        decisions = resolve_decisions(
            self._taxonomy,
            ((found.product_id, cid, value, None) for cid, value in found.labels),
            field="annotation.result",
        )
        done = await self._desk.submit(found.labeler, decisions)
        return {
            "status": "stored",
            "labeler": found.labeler,
            "saved": done.saved,
            "rows": done.rows,
            "completed": done.completed,
        }


Api = serve.ingress(api)(Endpoints)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as err:
        raise RequestError(422, "body", f"not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise RequestError(
            422, "body", f"expected a JSON object, got {type(body).__name__}"
        )
    return body


def _local(row: dict[str, Any] | None) -> str | None:
    """A catalog image the model can read itself (a path or filesystem URI)."""
    location = (row or {}).get("image")
    if not location or str(location).startswith(("http://", "https://")):
        return None
    return str(location)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def _flag(value: Any) -> bool | None:
    number = _number(value)
    return None if number is None else bool(number)


# -- building and starting the app ---------------------------------------------


def build_app(config: PipelineConfig) -> serve.Application:
    """The application for ``config``: replicas, autoscaling and resources
    from ``config.serving``."""
    settings = AppSettings.from_config(config)
    serving = settings.serving
    scaling: dict[str, Any]
    if serving.autoscaling is not None:
        scaling = {"autoscaling_config": serving.autoscaling.model_dump()}
    else:
        scaling = {"num_replicas": serving.replicas}
    scorer = serve.deployment(
        Scorer,
        name="Scorer",
        ray_actor_options={"num_cpus": serving.model_num_cpus},
        max_ongoing_requests=serving.max_ongoing_requests,
        **scaling,
    ).bind(settings)
    ingress = serve.deployment(
        Api,
        name="Api",
        num_replicas=serving.ingress_replicas,
        ray_actor_options={"num_cpus": serving.ingress_num_cpus},
        max_ongoing_requests=serving.max_ongoing_requests,
    )
    return ingress.bind(scorer, settings)


def start(config: PipelineConfig, *, blocking: bool = False) -> DeploymentHandle:
    """Run the app on the Ray instance this process is connected to.

    Serve's HTTP proxy listens on ``serving.host:serving.port``; those apply
    when Serve starts, so a Serve instance already running keeps its own.
    """
    serving = config.serving
    serve.start(http_options={"host": serving.host, "port": serving.port})
    handle = serve.run(
        build_app(config),
        name=APP_NAME,
        route_prefix=serving.route_prefix,
        blocking=False,
    )
    logger.info(
        "raycat scoring app at http://%s:%d%s (docs at %s/docs)",
        serving.host,
        serving.port,
        serving.route_prefix,
        serving.route_prefix.rstrip("/"),
    )
    if blocking:
        block_until_interrupted()
    return handle


def block_until_interrupted() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("stopping the raycat scoring app")
        serve.delete(APP_NAME)

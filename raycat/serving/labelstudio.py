"""The Label Studio ML-backend protocol, as plain functions.

Label Studio talks to an ML backend over four routes, served by the same app
as the labeling page (:mod:`raycat.serving.app`):

- ``POST /setup`` ``{"project", "schema": <label config XML>, ...}`` ->
  ``{"model_version"}``;
- ``POST /predict`` ``{"tasks": [{"id", "data": {...}}], "label_config",
  "project", "params"}`` -> ``{"results": [{"model_version", "score",
  "result": [{"from_name", "to_name", "type": "choices", "value":
  {"choices": [...]}}]}], "model_version"}``, one result per task;
- ``GET /health`` -> ``{"status": "UP", ...}``;
- ``POST /webhook`` ``{"action": "ANNOTATION_CREATED" | "ANNOTATION_UPDATED",
  "annotation": {"result": [...], "completed_by", ...}, "task": {"id",
  "data"}, "project"}``: the annotation is stored like a labeling-page
  submission.

A task's ``data`` carries ``product_id`` (a product of the run's catalog,
whose text and image are then used) and optionally ``title``,
``description``, ``extra_text``, ``colour`` (or ``text``, read as the title)
and ``category`` (the category the queue asked about).  Choice values in the
label config are category ids or paths (``Kitchen > Mugs``);
:func:`label_config` writes such a config for a taxonomy.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from raycat.errors import TaxonomyError
from raycat.serving.errors import RequestError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
TEXT_KEYS = ("title", "description", "extra_text", "colour")
DEFAULT_FROM_NAME = "category"
DEFAULT_TO_NAME = "text"


@dataclass
class ChoicesControl:
    """The ``<Choices>`` tag of a label config, mapped onto the taxonomy."""

    from_name: str
    to_name: str
    multiple: bool
    # category id -> the choice value Label Studio shows for it
    values: dict[str, str] = field(default_factory=dict)


def default_control(taxonomy: Taxonomy) -> ChoicesControl:
    """The control of :func:`label_config`: every category, by its path."""
    values = {cid: taxonomy.path_str(cid) for cid in taxonomy.ids}
    return ChoicesControl(DEFAULT_FROM_NAME, DEFAULT_TO_NAME, True, values)


def parse_label_config(xml: str | None, taxonomy: Taxonomy) -> ChoicesControl:
    """The first ``<Choices>`` control of a label config, its values resolved
    to categories; without a config, :func:`default_control`."""
    if not xml:
        return default_control(taxonomy)
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise RequestError(422, "label_config", f"not valid XML ({err})") from None
    tag = next((el for el in root.iter() if el.tag == "Choices"), None)
    if tag is None or not tag.get("name") or not tag.get("toName"):
        raise RequestError(
            422,
            "label_config",
            "no <Choices name=... toName=...> control; raycat predicts categories "
            "as choices (see GET /v1/labelstudio/config for a config to start from)",
        )
    values: dict[str, str] = {}
    unknown = []
    for choice in tag.iter("Choice"):
        value = choice.get("value") or choice.get("alias") or ""
        try:
            values.setdefault(taxonomy.resolve(value), value)
        except TaxonomyError:
            unknown.append(value)
    if unknown:
        logger.warning(
            "label config: %d choices name no category of the taxonomy and are "
            "never predicted (first: %r)",
            len(unknown),
            unknown[0],
        )
    return ChoicesControl(
        from_name=tag.get("name", DEFAULT_FROM_NAME),
        to_name=tag.get("toName", DEFAULT_TO_NAME).split(",")[0],
        multiple=tag.get("choice", "single") == "multiple",
        values=values,
    )


def label_config(taxonomy: Taxonomy) -> str:
    """A Label Studio label config for the taxonomy: the product's text, its
    image, and one choice per category (multiple choice, values are paths)."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(taxonomy.path_str(cid))}/>"
        for cid in taxonomy.ids
    )
    return (
        "<View>\n"
        '  <Image name="image" value="$image_url"/>\n'
        f'  <Text name="{DEFAULT_TO_NAME}" value="$title"/>\n'
        '  <Text name="description" value="$description"/>\n'
        f'  <Choices name="{DEFAULT_FROM_NAME}" toName="{DEFAULT_TO_NAME}" '
        'choice="multiple" showInline="false">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def task_products(
    tasks: Any, catalog_rows: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Product dicts for the model from Label Studio tasks.

    A task whose ``data.product_id`` is in the catalog starts from the catalog
    row (its text and image); text fields in the task override it.
    """
    if not isinstance(tasks, list) or not tasks:
        raise RequestError(422, "tasks", "expected a non-empty list of tasks")
    products = []
    for i, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            raise RequestError(422, f"tasks[{i}].data", "expected an object")
        pid = str(data.get("product_id") or task.get("id") or i)
        row = dict(catalog_rows.get(pid) or {})
        product = {k: row.get(k) or "" for k in TEXT_KEYS}
        product["product_id"] = pid
        # Catalog images are local to the cluster; a task's image URL usually
        # points at Label Studio's own storage, which needs its credentials.
        product["image"] = row.get("image")
        for key in TEXT_KEYS:
            if data.get(key):
                product[key] = str(data[key])
        if not product["title"] and data.get("text"):
            product["title"] = str(data["text"])
        if not product["title"]:
            raise RequestError(
                422,
                f"tasks[{i}].data",
                f"product {pid!r} is not in the catalog and the task has no title "
                "or text to score",
            )
        products.append(product)
    return products


def predictions(
    probability: np.ndarray,
    control: ChoicesControl,
    taxonomy: Taxonomy,
    *,
    threshold: float,
    model_version: str,
) -> list[dict[str, Any]]:
    """One Label Studio prediction per row of ``probability`` (n, C).

    Multiple choice: every category at or above ``threshold`` that is a choice.
    Single choice: the deepest such category (the most specific answer), or the
    most probable choice when none reaches the threshold.  ``score`` is the
    mean probability of what is predicted.
    """
    index = {cid: j for j, cid in enumerate(taxonomy.ids)}
    columns = [(cid, index[cid]) for cid in control.values if cid in index]
    out = []
    for row in np.asarray(probability):
        picked = [(cid, float(row[j])) for cid, j in columns if row[j] >= threshold]
        if not control.multiple:
            if picked:
                picked = [max(picked, key=lambda c: (taxonomy.depth(c[0]), c[1]))]
            elif columns:
                cid, j = max(columns, key=lambda c: row[c[1]])
                picked = [(cid, float(row[j]))]
        result = []
        if picked:
            result.append(
                {
                    "from_name": control.from_name,
                    "to_name": control.to_name,
                    "type": "choices",
                    "value": {"choices": [control.values[c] for c, _ in picked]},
                }
            )
        score = float(np.mean([p for _, p in picked])) if picked else 0.0
        out.append({"model_version": model_version, "score": score, "result": result})
    return out


@dataclass
class AnnotationLabels:
    labeler: str
    product_id: str
    # (category id, value): chosen categories are 1; the asked category is 0
    # when the annotator did not choose it nor anything below it.
    labels: list[tuple[str, int]]


def annotation_labels(payload: Any, taxonomy: Taxonomy) -> AnnotationLabels | None:
    """The labels in an annotation webhook event; None for events that carry
    none (other actions, a skipped task)."""
    if not isinstance(payload, dict):
        raise RequestError(422, "body", "expected a Label Studio webhook event")
    action = payload.get("action")
    if action not in ANNOTATION_ACTIONS:
        return None
    annotation = payload.get("annotation")
    task = payload.get("task")
    if not isinstance(annotation, dict):
        raise RequestError(422, "annotation", f"{action} without an annotation object")
    if annotation.get("was_cancelled"):
        return None
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict) or not data.get("product_id"):
        raise RequestError(
            422,
            "task.data.product_id",
            "the task names no product; import tasks with data.product_id",
        )

    chosen: list[str] = []
    for i, item in enumerate(annotation.get("result") or []):
        if not isinstance(item, dict) or item.get("type") != "choices":
            continue
        values = (item.get("value") or {}).get("choices") or []
        for value in values:
            try:
                chosen.append(taxonomy.resolve(str(value)))
            except TaxonomyError as err:
                raise RequestError(
                    422, f"annotation.result[{i}].value.choices", str(err)
                ) from None
    labels = [(cid, 1) for cid in dict.fromkeys(chosen)]
    asked = data.get("category")
    if asked:
        try:
            asked_id = taxonomy.resolve(str(asked))
        except TaxonomyError as err:
            raise RequestError(422, "task.data.category", str(err)) from None
        implied = taxonomy.closure(chosen)
        below = set(taxonomy.descendants(asked_id))
        if asked_id not in implied and not below & set(chosen):
            labels.append((asked_id, 0))
    if not labels:
        return None

    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    labeler = f"labelstudio:{who if who not in (None, '') else 'unknown'}"
    return AnnotationLabels(labeler, str(data["product_id"]), labels)

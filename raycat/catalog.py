"""Reading the catalog table into raycat's canonical product frame.

The canonical frame has one row per product and these columns, whatever the
source table calls them (the config's column mapping says which is which):

- ``product_id`` (str, unique), ``title`` (str), ``description`` (str, "" when
  absent), ``extra_text`` (extra text fields joined by spaces), ``colour`` (str);
- ``image``: an absolute path or URI of the product's image, or None;
- ``category_path``: the product's category path as a list of names, cut to the
  configured depth, or None (only when the taxonomy comes from a path column).

Parquet, CSV and JSON Lines are read with pyarrow, from a local path or from any
filesystem URI pyarrow understands (``s3://``, ``gs://``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from raycat.config import CatalogConfig, PipelineConfig, TaxonomyConfig, is_uri
from raycat.errors import CatalogError
from raycat.taxonomy import Taxonomy

logger = logging.getLogger(__name__)

CANONICAL_COLUMNS = [
    "product_id",
    "title",
    "description",
    "extra_text",
    "colour",
    "image",
    "category_path",
]


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(path):
        try:
            return pafs.FileSystem.from_uri(path)
        except (pa.ArrowInvalid, OSError) as err:
            raise CatalogError(
                f"cannot open {path!r}: {err}; check the URI and the credentials "
                "pyarrow uses for that filesystem"
            ) from None
    return pafs.LocalFileSystem(), path


def read_table(path: str, fmt: str, *, what: str = "catalog") -> pd.DataFrame:
    """Read a Parquet, CSV or JSON Lines table (a file or a folder of files)."""
    fs, inner = _filesystem(path)
    info = fs.get_file_info(inner)
    if info.type == pafs.FileType.NotFound:
        raise CatalogError(
            f"{what} table {path!r} not found; check the path in the config "
            "(relative paths are relative to the config file)"
        )
    try:
        if fmt == "parquet" or info.type == pafs.FileType.Directory:
            dataset_format = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}[fmt]
            return (
                pads.dataset(inner, filesystem=fs, format=dataset_format)
                .to_table()
                .to_pandas()
            )
        with fs.open_input_stream(inner) as stream:
            if fmt == "csv":
                # Every column as text: ids such as "00123" must keep their zeros.
                return pd.read_csv(stream, dtype=str, keep_default_na=False)
            return pd.read_json(stream, lines=True, dtype=False)
    except (pa.ArrowInvalid, OSError, ValueError) as err:
        raise CatalogError(
            f"cannot read {what} table {path!r} as {fmt}: {err}; check "
            f"dataset.catalog.format and the file's contents"
        ) from None


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("").str.strip().astype(object)


def parse_path(value: object, separator: str) -> list[str] | None:
    """Split one raw category-path cell into names.

    Accepts a plain string (``A > B``), a JSON list holding one such string (the
    Flipkart form ``["A >> B >> C"]``) or a list.
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, list | tuple):
        items = list(value)
        if len(items) == 1 and isinstance(items[0], str) and separator in items[0]:
            value = items[0]
        else:
            names = [str(v).strip() for v in items]
            return names or None
    text = str(value).strip()
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            loaded = None
        if isinstance(loaded, list):
            text = str(loaded[0]).strip() if loaded else ""
    if not text:
        return None
    return [p.strip() for p in text.split(separator)]


def _repeats_title(element: str, title: str) -> bool:
    # Flipkart-style paths end with the product's name, often cut with "...".
    leaf = element.strip().removesuffix("...").strip().lower()
    return bool(leaf) and len(leaf) >= 8 and title.strip().lower().startswith(leaf)


def clean_path(
    names: list[str] | None, title: str, cfg: TaxonomyConfig
) -> list[str] | None:
    if not names:
        return None
    if cfg.drop_title_leaf and len(names) > 1 and _repeats_title(names[-1], title):
        names = names[:-1]
    if cfg.max_depth:
        names = names[: cfg.max_depth]
    return names


@dataclass
class Catalog:
    """The products, in the canonical frame, and what was found reading them."""

    products: pd.DataFrame
    source: str
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.products)


def load_catalog(config: PipelineConfig) -> Catalog:
    """Read the catalog table named by ``config`` into the canonical frame.

    Raises :class:`CatalogError` for a missing table, a missing mapped column or
    duplicate product ids (naming the rows); rows without a title are kept but
    reported as problems.
    """
    cat: CatalogConfig = config.dataset.catalog
    tax: TaxonomyConfig = config.dataset.taxonomy
    df = read_table(cat.path, cat.format or "parquet")
    cols = cat.columns
    wanted = {
        "columns.id": cols.id,
        "columns.title": cols.title,
        "columns.description": cols.description,
        "columns.image": cols.image,
        "columns.colour": cols.colour,
    }
    wanted |= {f"columns.extra_text[{i}]": c for i, c in enumerate(cols.extra_text)}
    if tax.source == "path_column":
        wanted["taxonomy.column"] = tax.column
    for setting, column in wanted.items():
        if column is not None and column not in df.columns:
            raise CatalogError(
                f"dataset.{'catalog.' if setting.startswith('columns') else ''}"
                f"{setting} names column {column!r}, which {cat.path!r} does not "
                f"have; its columns are {sorted(df.columns)[:20]!r}"
            )

    out = pd.DataFrame({"product_id": _text(df[cols.id])})
    out["title"] = _text(df[cols.title])
    out["description"] = _text(df[cols.description]) if cols.description else ""
    if cols.extra_text:
        parts = [_text(df[c]) for c in cols.extra_text]
        joined = parts[0]
        for p in parts[1:]:
            joined = joined + " " + p
        out["extra_text"] = joined.str.strip()
    else:
        out["extra_text"] = ""
    out["colour"] = _text(df[cols.colour]) if cols.colour else ""
    out["image"] = (
        [_image_location(v, cat.image_root) for v in df[cols.image]]
        if cols.image
        else None
    )
    if tax.source == "path_column":
        out["category_path"] = [
            clean_path(parse_path(v, tax.separator), t, tax)
            for v, t in zip(df[tax.column], out["title"], strict=True)
        ]
    else:
        out["category_path"] = None

    problems = _check_rows(out, cat.path)
    logger.info("read %d products from %s", len(out), cat.path)
    return Catalog(out, cat.path, problems)


def _image_location(value: object, root: str | None) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    if is_uri(text) or text.startswith(("http://", "https://")) or not root:
        return text
    if Path(text).is_absolute():
        return text
    return f"{root.rstrip('/')}/{text}"


def _check_rows(df: pd.DataFrame, source: str) -> list[str]:
    empty_ids = df.index[df["product_id"] == ""]
    if len(empty_ids):
        raise CatalogError(
            f"{source}: {len(empty_ids)} rows have an empty product id (first at row "
            f"{int(empty_ids[0])}); every product needs an id"
        )
    dup = df["product_id"].duplicated(keep=False)
    if dup.any():
        first = df.loc[dup, "product_id"].iloc[0]
        rows = df.index[df["product_id"] == first].tolist()[:5]
        raise CatalogError(
            f"{source}: {int(dup.sum())} rows share a product id; e.g. {first!r} in "
            f"rows {rows}; product ids must be unique"
        )
    problems = []
    no_title = int((df["title"] == "").sum())
    if no_title:
        problems.append(f"{no_title} products have an empty title")
    return problems


def build_taxonomy(config: PipelineConfig, catalog: Catalog) -> Taxonomy:
    """The taxonomy named by ``config``: from the catalog's path column or from a
    parent/child table."""
    tax = config.dataset.taxonomy
    if tax.source == "path_column":
        paths = [p for p in catalog.products["category_path"] if p]
        return Taxonomy.from_paths(paths, source=f"{catalog.source}:{tax.column}")
    assert tax.table is not None  # checked by the config model
    fmt = _format_of(tax.table)
    table = read_table(tax.table, fmt, what="taxonomy")
    for setting, col in (
        ("parent_column", tax.parent_column),
        ("child_column", tax.child_column),
    ):
        if col not in table.columns:
            raise CatalogError(
                f"dataset.taxonomy.{setting} names column {col!r}, which "
                f"{tax.table!r} does not have; its columns are {list(table.columns)}"
            )
    parents = _text(table[tax.parent_column])
    children = _text(table[tax.child_column])
    return Taxonomy.from_edges(zip(parents, children, strict=True), source=tax.table)


def _format_of(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "parquet"

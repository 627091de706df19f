"""``raycat demo-data``: write a synthetic catalog that the whole pipeline runs on.

:func:`generate_catalog` writes into one folder:

- ``products.parquet``: product_id, title, description, colour, image,
  category_path, plus image_category_path (the category the image was drawn
  from; it differs from category_path for the image/text mismatches) and
  image_status (ok, missing or corrupt);
- ``images/NNNN/P########.jpg``: one JPEG per product, 1000 per folder; a few
  products have no file and a few a truncated one, as in a real catalog;
- ``rules.yaml``: a deliberately flawed old keyword-rule system;
- ``config.yaml``: a pipeline config pointing at all of it with relative paths;
- ``demo_world.json``: what the generator decided (vocabularies, image styles,
  uncovered categories, misleading rule keywords, label counts), for analysis.

Every product is drawn from its own random stream seeded by (seed, index), and
the Parquet row groups are fixed-size chunks, so the same seed gives
byte-identical files whatever the number of workers.  Rows are written chunk by
chunk and images by a process pool, so a million products need neither the
table in memory nor more than a few chunks in flight.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from raycat.config import parse_config
from raycat.demo.errors import DemoDataError
from raycat.demo.products import (
    COLUMNS,
    MAX_PRODUCTS,
    ChunkResult,
    ProductParams,
    generate_chunk,
    init_worker,
    run_chunk,
)
from raycat.demo.rules import build_rules, drop_absent_categories, write_rules_yaml
from raycat.demo.world import DemoWorld, build_world, normalize_width

logger = logging.getLogger(__name__)

PRODUCTS_FILE = "products.parquet"
IMAGES_DIR = "images"
RULES_FILE = "rules.yaml"
CONFIG_FILE = "config.yaml"
WORLD_FILE = "demo_world.json"
_OUTPUTS = (PRODUCTS_FILE, IMAGES_DIR, RULES_FILE, CONFIG_FILE, WORLD_FILE)

SCHEMA = pa.schema([pa.field(name, pa.string()) for name in COLUMNS])

# Chunks (and Parquet row groups) of 2000 products: about 5 MB of images and a
# few hundred kB of rows each, small enough to keep 2 per worker in flight.
DEFAULT_CHUNK_SIZE = 2000
# Chunks submitted ahead per worker, so no worker waits while the parent
# writes; more would only hold more rows in memory.
_CHUNKS_AHEAD_PER_WORKER = 2


@dataclass
class DemoSummary:
    """What :func:`generate_catalog` wrote."""

    out_dir: Path
    products_path: Path
    images_dir: Path
    rules_path: Path
    config_path: Path
    world_path: Path
    seed: int
    n_products: int
    n_images: int  # image files written, the corrupt ones included
    n_missing_images: int
    n_corrupt_images: int
    n_mismatched_images: int
    n_categories: int
    n_leaves: int
    n_rules: int
    n_uncovered_categories: int
    workers: int
    elapsed_s: float

    @property
    def products_per_s(self) -> float:
        return self.n_products / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise DemoDataError(f"{name} must be between 0 and 1; got {value!r}")


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DemoDataError(f"{name} must be an integer; got {value!r}")
    if not low <= value <= high:
        raise DemoDataError(f"{name} must be between {low} and {high}; got {value}")
    return value


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoDataError(
            f"output folder {str(out_dir)!r} is a file; give a folder path"
        )
    present = [name for name in _OUTPUTS if (out_dir / name).exists()]
    if present and not overwrite:
        raise DemoDataError(
            f"output folder {str(out_dir)!r} already holds {', '.join(present)}; "
            "choose an empty folder or pass overwrite=True (--overwrite) to "
            "replace them"
        )
    for name in present:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _config(seed: int) -> dict:
    return {
        "name": f"raycat-demo-{seed}",
        # Relative to this file, so the run lives inside the demo folder.
        "home": "runs",
        "dataset": {
            "catalog": {
                "path": PRODUCTS_FILE,
                "columns": {
                    "id": "product_id",
                    "title": "title",
                    "description": "description",
                    "image": "image",
                    "colour": "colour",
                },
                "image_root": IMAGES_DIR,
            },
            "taxonomy": {
                "source": "path_column",
                "column": "category_path",
                "separator": " > ",
                "drop_title_leaf": False,
            },
            "ground_truth": {
                "source": "path_column",
                "test_fraction": 0.2,
                "seed": seed,
            },
            "rules": RULES_FILE,
        },
    }


def _chunks(
    world: DemoWorld,
    params: ProductParams,
    bounds: Sequence[tuple[int, int]],
    workers: int,
) -> Iterator[ChunkResult]:
    """Chunk results in order, drawn in this process or by a pool."""
    if workers == 1:
        for start, stop in bounds:
            yield generate_chunk(world, params, start, stop)
        return

    # spawn, not fork: the parent may hold pyarrow (or Ray) threads, and forking
    # a threaded process can deadlock the child.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(world, params),
    )
    try:
        todo = iter(bounds)
        pending: deque[tuple[tuple[int, int], Future[ChunkResult]]] = deque()

        def submit() -> None:
            span = next(todo, None)
            if span is not None:
                pending.append((span, pool.submit(run_chunk, *span)))

        for _ in range(_CHUNKS_AHEAD_PER_WORKER * workers):
            submit()
        while pending:
            (start, stop), future = pending.popleft()
            try:
                result = future.result()
            except Exception as err:
                raise DemoDataError(
                    f"drawing products {start}..{stop - 1} failed in a worker "
                    f"process: {type(err).__name__}: {err}"
                ) from err
            submit()
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def generate_catalog(
    out_dir: str | Path,
    n_products: int,
    *,
    seed: int = 0,
    depth: int = 3,
    width: int | Sequence[int] | None = None,
    image_size: int = 64,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    missing_image_fraction: float = 0.01,
    corrupt_image_fraction: float = 0.002,
    mismatch_fraction: float = 0.05,
    uncovered_fraction: float = 0.2,
    inner_label_fraction: float = 0.05,
    missing_description_fraction: float = 0.01,
    overwrite: bool = False,
) -> DemoSummary:
    """Write a synthetic catalog, its images, an old rules file and a config.

    Args:
        out_dir: Folder to write into; created if missing.  It must not hold an
            earlier demo catalog unless ``overwrite`` is set (then only the
            generator's own files are replaced; ``runs/`` is kept).
        n_products: Number of products.
        seed: Everything is deterministic given the seed (and ``chunk_size``,
            which sets the Parquet row groups).
        depth: Levels of the taxonomy.
        width: Children per node, one number per level or one for all; the
            default (6, 4, 3) gives 102 categories and 72 leaves at depth 3.
        image_size: Side of the square JPEGs, in pixels.
        workers: Processes drawing products and images; defaults to the number
            of CPUs.  The output does not depend on it.
        chunk_size: Products per chunk of work and per Parquet row group.
        missing_image_fraction: Share of products without an image file.
        corrupt_image_fraction: Share of products with a truncated JPEG.
        mismatch_fraction: Share of products whose image is drawn from another
            leaf category than their text.
        uncovered_fraction: Share of leaf categories no rule names.
        inner_label_fraction: Share of products labelled with an inner
            category instead of a leaf.
        missing_description_fraction: Share of products without a description.
        overwrite: Replace an earlier demo catalog in ``out_dir``.

    Returns:
        A :class:`DemoSummary` with the paths written and the counts.

    Example:
        >>> summary = generate_catalog("demo", 1000, seed=7)  # doctest: +SKIP
        >>> load_config(summary.config_path)  # doctest: +SKIP
    """
    n_products = _check_int("n_products", n_products, 1, MAX_PRODUCTS - 1)
    seed = _check_int("seed", seed, 0, 2**32 - 1)
    image_size = _check_int("image_size", image_size, 16, 1024)
    chunk_size = _check_int("chunk_size", chunk_size, 1, 10**6)
    if workers is None:
        workers = os.cpu_count() or 1
    workers = _check_int("workers", workers, 1, 1024)
    for name, value in (
        ("missing_image_fraction", missing_image_fraction),
        ("corrupt_image_fraction", corrupt_image_fraction),
        ("mismatch_fraction", mismatch_fraction),
        ("uncovered_fraction", uncovered_fraction),
        ("inner_label_fraction", inner_label_fraction),
        ("missing_description_fraction", missing_description_fraction),
    ):
        _check_fraction(name, value)
    if missing_image_fraction + corrupt_image_fraction > 1.0:
        raise DemoDataError(
            "missing_image_fraction + corrupt_image_fraction must not exceed 1; "
            f"got {missing_image_fraction} + {corrupt_image_fraction}"
        )
    widths = normalize_width(width, depth)

    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    started = time.perf_counter()

    # The world, the rules and the config.
    world = build_world(seed, widths, inner_label_fraction=inner_label_fraction)
    rules = build_rules(world, uncovered_fraction=uncovered_fraction)
    config = _config(seed)
    # Checked against the config model now, so a schema change fails here and
    # not in the first pipeline run.
    parse_config(config, base_dir=out, source=str(out / CONFIG_FILE))
    (out / CONFIG_FILE).write_text(
        "# Pipeline config of a raycat demo catalog; paths are relative to this "
        "file.\n" + yaml.safe_dump(config, sort_keys=False)
    )
    logger.info(
        "demo-data: %d categories (%d leaves), %d rules (%d categories uncovered); "
        "drawing %d products with %d worker(s) into %s",
        len(world.categories),
        len(world.leaves),
        len(rules.rules),
        len(rules.uncovered),
        n_products,
        workers,
        out,
    )

    # The products, chunk by chunk.
    images_dir = out / IMAGES_DIR
    images_dir.mkdir()
    params = ProductParams(
        images_dir=str(images_dir.resolve()),
        image_size=image_size,
        missing_image_fraction=missing_image_fraction,
        corrupt_image_fraction=corrupt_image_fraction,
        mismatch_fraction=mismatch_fraction,
        missing_description_fraction=missing_description_fraction,
    )
    bounds = [
        (start, min(start + chunk_size, n_products))
        for start in range(0, n_products, chunk_size)
    ]
    workers_used = min(workers, len(bounds))
    tmp_path = out / (PRODUCTS_FILE + ".partial")
    n_missing = n_corrupt = n_mismatched = done = 0
    label_counts = [0] * len(world.categories)
    try:
        with pq.ParquetWriter(tmp_path, SCHEMA) as writer:
            for result in _chunks(world, params, bounds, workers_used):
                writer.write_table(pa.table(result.columns, schema=SCHEMA))
                n_missing += result.n_missing
                n_corrupt += result.n_corrupt
                n_mismatched += result.n_mismatched
                for index, count in result.label_counts.items():
                    label_counts[index] += count
                done = result.stop
                elapsed = time.perf_counter() - started
                logger.info(
                    "demo-data: %d/%d products (%.0f%%), %.0f products/s",
                    done,
                    n_products,
                    100.0 * done / n_products,
                    done / elapsed if elapsed > 0 else 0.0,
                )
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    # Only a complete table gets the real name, so an interrupted run cannot
    # be mistaken for a finished one.
    os.replace(tmp_path, out / PRODUCTS_FILE)

    # Rules are written last: only now is it known which categories the
    # catalog (and so its taxonomy) holds.
    present: set[str] = set()
    for index, count in enumerate(label_counts):
        if count:
            cat = world.categories[index]
            present.update(world.categories[i].path_str for i in cat.ancestors)
            present.add(cat.path_str)
    drop_absent_categories(rules, present)
    if rules.dropped:
        logger.info(
            "demo-data: left out %d rule(s) whose category no product falls under "
            "(%d products are too few to fill every category)",
            len(rules.dropped),
            n_products,
        )
    write_rules_yaml(out / RULES_FILE, rules, seed=seed)

    world_json = world.to_json()
    for entry, count in zip(world_json["categories"], label_counts, strict=True):
        entry["n_products"] = count
    world_json["uncovered_categories"] = [
        world.categories[i].path_str for i in rules.uncovered
    ]
    world_json["misleading_rule_keywords"] = rules.misleading
    world_json["rules_left_out_for_empty_categories"] = rules.dropped
    (out / WORLD_FILE).write_text(json.dumps(world_json, indent=1))

    elapsed = time.perf_counter() - started
    summary = DemoSummary(
        out_dir=out,
        products_path=out / PRODUCTS_FILE,
        images_dir=images_dir,
        rules_path=out / RULES_FILE,
        config_path=out / CONFIG_FILE,
        world_path=out / WORLD_FILE,
        seed=seed,
        n_products=n_products,
        n_images=n_products - n_missing,
        n_missing_images=n_missing,
        n_corrupt_images=n_corrupt,
        n_mismatched_images=n_mismatched,
        n_categories=len(world.categories),
        n_leaves=len(world.leaves),
        n_rules=len(rules.rules),
        n_uncovered_categories=len(rules.uncovered),
        workers=workers_used,
        elapsed_s=elapsed,
    )
    logger.info(
        "demo-data: wrote %d products (%d images, %d missing, %d corrupt, %d "
        "image/text mismatches) in %.1f s, %.0f products/s",
        n_products,
        summary.n_images,
        n_missing,
        n_corrupt,
        n_mismatched,
        elapsed,
        summary.products_per_s,
    )
    return summary

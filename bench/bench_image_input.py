"""Images per second from JPEG files into ``model.fit`` for the ``image``
component: Ray Data streaming against a plain ``tf.data`` pipeline.

Both feed the same model (same backbone, size, batch size and seed) from the
same files of a synthetic catalog (products whose image is readable):

- Ray Data: ``from_pandas`` -> ``map_batches`` decode (PIL, in Ray tasks) ->
  ``to_tf``, exactly what the component trains on;
- tf.data: ``tf.io.read_file`` -> ``decode_jpeg`` -> ``resize``, parallel
  ``map`` with AUTOTUNE, batch, prefetch.

Each runs ``--epochs`` epochs (default 2); the figure is the last epoch's
images/s, so graph tracing and warm-up are left out.

    .venv/bin/python bench/bench_image_input.py --products 2000
    .venv/bin/python bench/bench_image_input.py --products 5000 --image-size 128
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pandas as pd

from raycat.demo import generate_catalog
from raycat.demo.synthetic import IMAGES_DIR, PRODUCTS_FILE
from raycat.taxonomy import Taxonomy


def demo_frame(out: Path, n_products: int, jpeg_size: int, seed: int = 0):
    """Write a synthetic catalog into ``out`` and load it with
    :func:`load_demo_frame`."""
    generate_catalog(out, n_products, seed=seed, image_size=jpeg_size, overwrite=True)
    return load_demo_frame(out)


def load_demo_frame(out: Path):
    """A synthetic catalog as a training frame (absolute image paths,
    ``targets`` closed under ancestors) and its taxonomy."""
    df = pd.read_parquet(out / PRODUCTS_FILE)
    paths = [p.split(" > ") for p in df["category_path"].unique()]
    taxonomy = Taxonomy.from_paths(paths)
    ids = {
        p: taxonomy.id_for_path(p.split(" > ")) for p in df["category_path"].unique()
    }
    closed = {p: sorted(taxonomy.closure([cid])) for p, cid in ids.items()}
    df["targets"] = [closed[p] for p in df["category_path"]]
    df["image"] = [str(out / IMAGES_DIR / p) for p in df["image"]]
    df["extra_text"] = ""
    return df, taxonomy


def start_ray(object_store_mib: int = 500) -> None:
    import ray
    from ray.data import DataContext

    ray.init(
        address="local",
        include_dashboard=False,
        object_store_memory=object_store_mib * 2**20,
        log_to_driver=False,
        configure_logging=False,
    )
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def tf_data_pipeline(frame: pd.DataFrame, taxonomy: Taxonomy, size: int, batch: int):
    import tensorflow as tf

    labels = taxonomy.multi_hot(frame["targets"].tolist()).astype(np.float32)
    files = tf.data.Dataset.from_tensor_slices(
        (frame["image"].to_numpy(dtype=str), labels)
    )

    def load(path, y):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, (size, size), method="bilinear")
        pixels = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return {"pixels": pixels, "has_image": tf.constant(1.0)}, y

    return (
        files.map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    parser.add_argument("--jpeg-size", type=int, default=128, help="files' side")
    parser.add_argument("--image-size", type=int, default=96, help="model input")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--backbone",
        default="mobilenet_v3_small",
        choices=["mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"],
    )
    parser.add_argument(
        "--fine-tune-layers",
        type=int,
        default=0,
        help="0: frozen backbone (the input pipeline dominates)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from raycat.components import component_class
    from raycat.components.keras.training import as_tf, build_and_compile

    print(
        f"cpu_count={os.cpu_count()} products={args.products} "
        f"jpeg={args.jpeg_size}px model_input={args.image_size}px "
        f"batch={args.batch_size} backbone={args.backbone} "
        f"fine_tune_layers={args.fine_tune_layers} epochs={args.epochs}"
    )
    with tempfile.TemporaryDirectory(prefix="raycat-bench-image-") as tmp:
        frame, taxonomy = demo_frame(Path(tmp) / "demo", args.products, args.jpeg_size)
        readable = frame[frame["image_status"] == "ok"].reset_index(drop=True)
        n = len(readable)
        print(f"{n} readable images of {len(frame)} products")
        params = {
            "trainer": "local",
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "backbone": args.backbone,
            "weights": None,
            "fine_tune_layers": args.fine_tune_layers,
            "epochs": args.epochs,
            "shuffle_buffer": 0,
        }
        comp = component_class("image")(taxonomy, params)
        start_ray()

        results = {}
        for name in ("ray_data", "tf_data"):
            if name == "ray_data":
                data = as_tf(comp, comp.stream(readable, labels=True), training=True)
            else:
                data = tf_data_pipeline(
                    readable, taxonomy, args.image_size, args.batch_size
                )
            model = build_and_compile(comp, gpu=False)
            timer = EpochTimer()
            model.fit(
                data, epochs=args.epochs, callbacks=[timer], shuffle=False, verbose=0
            )
            results[name] = n / timer.seconds[-1]
            epochs = ", ".join(f"{s:.1f}" for s in timer.seconds)
            print(
                f"{name:9s} {results[name]:8.1f} images/s in the last epoch "
                f"(epoch times s: {epochs})"
            )
        print(
            f"ratio ray_data / tf_data = {results['ray_data'] / results['tf_data']:.2f}"
        )


if __name__ == "__main__":
    main()

"""The ``raycat serve`` command.

No ``from __future__ import annotations`` here: typer reads the command's
annotations, and ``ConfigArg`` is local to :func:`register`.
"""

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the raycat CLI."""
    from raycat.cli import ConfigArg

    @app.command("serve")
    def serve_cmd(
        config: ConfigArg,
        address: Annotated[
            str | None,
            typer.Option(
                help="Ray cluster to deploy on (default: RAY_ADDRESS, else a local "
                "Ray instance)"
            ),
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="HTTP port (default: serving.port)")
        ] = None,
        host: Annotated[
            str | None, typer.Option(help="HTTP host (default: serving.host)")
        ] = None,
    ) -> None:
        """Serve online scores, the labeling queue and page, and a Label Studio
        ML backend over HTTP; blocks until interrupted."""
        from raycat.cli import out
        from raycat.config import load_config
        from raycat.ray_runtime import init_ray
        from raycat.serving.app import start

        cfg = load_config(config)
        if port is not None:
            cfg.serving.port = port
        if host is not None:
            cfg.serving.host = host
        init_ray(address)
        start(cfg, blocking=False)
        prefix = cfg.serving.route_prefix.rstrip("/")
        out.print(
            f"serving {cfg.name} at http://{cfg.serving.host}:{cfg.serving.port}"
            f"{prefix}/ (API docs at {prefix}/docs); Ctrl-C stops it"
        )
        from raycat.serving.app import block_until_interrupted

        block_until_interrupted()

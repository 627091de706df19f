"""The epoch channel between a Ray Train worker and the process that started
its run (see :mod:`.training`).  Kept apart from the training code so that
the Ray actor it becomes does not import TensorFlow."""

from __future__ import annotations


class EpochChannel:
    """A Ray actor between a Ray Train worker and the process that started
    the run: the worker puts each epoch's metrics, the caller takes them and
    may ask the worker to stop."""

    def __init__(self):
        self.rows: list[dict[str, float]] = []
        self.stop = False

    def put(self, row: dict[str, float]) -> bool:
        self.rows.append(row)
        return self.stop

    def take(self) -> list[dict[str, float]]:
        rows, self.rows = self.rows, []
        return rows

    def request_stop(self) -> None:
        self.stop = True

    def stopping(self) -> bool:
        return self.stop

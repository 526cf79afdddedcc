"""The settings of :mod:`sk_twolayer.dask`, kept in ``dask.config``.

The defaults ship in ``sk-twolayer.yaml`` beside this file and are merged
into Dask's configuration when the package is imported, as Dask's own
libraries do; a user overrides them as any Dask setting. They are read on
the client when a fit starts (:func:`settings`).
"""

import os
from typing import NamedTuple

import dask
import yaml
from dask.utils import parse_bytes, parse_timedelta

_DEFAULTS = os.path.join(os.path.dirname(__file__), "sk-twolayer.yaml")

with open(_DEFAULTS, encoding="utf-8") as _file:
    dask.config.update_defaults(yaml.safe_load(_file))


class Settings(NamedTuple):
    """One fit's settings, read once from ``dask.config``."""

    fan_in: int
    star_workers: int
    direct: bool | None  # None: as the client says (direct_transfers)
    task_bytes: int
    balance: bool
    balance_rounds: int
    poll_interval: float  # seconds
    no_workers_timeout: float  # seconds
    evaluation_timeout: float | None  # seconds; None: no limit
    retries: int


def _true_false_or_null(value, name):
    """A setting that is true, false or null, given as such or as text (an
    environment variable's value, say)."""
    if value is None or isinstance(value, bool):
        return value
    words = {"true": True, "false": False, "null": None, "none": None}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ValueError(
        f"sk-twolayer.dask.{name} must be true, false or null, got {value!r}."
    )


def settings():
    """The current ``sk-twolayer.dask`` settings, checked."""
    def get(name):
        return dask.config.get(f"sk-twolayer.dask.{name}")

    current = Settings(
        fan_in=int(get("fan-in")),
        star_workers=int(get("star-workers")),
        direct=_true_false_or_null(get("direct-transfers"), "direct-transfers"),
        task_bytes=parse_bytes(get("task-size")),
        balance=bool(get("balance")),
        balance_rounds=int(get("balance-rounds")),
        poll_interval=parse_timedelta(get("poll-interval"), default="s"),
        no_workers_timeout=parse_timedelta(get("no-workers-timeout"), default="s"),
        evaluation_timeout=(None if get("evaluation-timeout") is None else
                            parse_timedelta(get("evaluation-timeout"), default="s")),
        retries=int(get("retries")),
    )
    if current.fan_in < 2:
        raise ValueError(
            f"sk-twolayer.dask.fan-in must be 2 or more, got {current.fan_in}."
        )
    if current.star_workers < 0:
        raise ValueError(
            "sk-twolayer.dask.star-workers must be 0 or more, got "
            f"{current.star_workers}."
        )
    if current.task_bytes <= 0:
        raise ValueError(
            f"sk-twolayer.dask.task-size must be positive, got {get('task-size')!r}."
        )
    if current.poll_interval <= 0 or current.no_workers_timeout <= 0:
        raise ValueError(
            "sk-twolayer.dask.poll-interval and no-workers-timeout must be "
            "positive durations."
        )
    if current.evaluation_timeout is not None and current.evaluation_timeout <= 0:
        raise ValueError(
            "sk-twolayer.dask.evaluation-timeout must be a positive duration, "
            f"or null for no limit; got {get('evaluation-timeout')!r}."
        )
    if current.balance_rounds < 0:
        raise ValueError(
            "sk-twolayer.dask.balance-rounds must be 0 or more, got "
            f"{current.balance_rounds}."
        )
    if current.retries < 0:
        raise ValueError(
            f"sk-twolayer.dask.retries must be 0 or more, got {current.retries}."
        )
    return current


def direct_transfers(settings, client):
    """Whether a fit's evaluations are calls from the client to the workers
    (:mod:`._calls`), rather than task graphs through the scheduler
    (:mod:`._graph`): the setting, where the client allows it
    (``Client(direct_to_workers=False)`` is never overridden); with neither
    saying, calls (a fit goes through the scheduler where its first call
    cannot reach a worker that the scheduler sees running:
    :class:`~._objective.DistributedObjective`)."""
    if getattr(client, "direct_to_workers", None) is False:
        return False
    return True if settings.direct is None else settings.direct


"""Speeds measured on this machine (seconds per step of a stage), for time estimates before a run.

Why a file beside the weights cache and not in a project: a new project on the same machine,
with the same device, base generator and batch, runs at the speed the last project measured, so
the Personalize page can say "about 40 min" before anything runs; a project folder copied to a
faster server must not carry the old machine's figures along. Nothing here is needed to run a
job: a missing or damaged file only means "no estimate yet".
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from personalize.fileio import atomic_write_json, read_json

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"


def timings_path() -> Path:
    from studio.weights.store import cache_dir

    return cache_dir() / TIMINGS_FILE


def speed_key(device: str, base: str, batch: int, processes: int = 1) -> str:
    """What a speed depends on: the device (its description, e.g. the GPU model), the base
    generator (its resolution and size), the batch and the number of processes."""
    return f"{device}|{base}|batch {batch}|{processes} process{'es' if processes > 1 else ''}"


def _read() -> dict[str, Any]:
    path = timings_path()
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        log.warning("ignoring the unreadable timings file %s (%s)", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def record_speed(key: str, **values: float | int | str) -> None:
    """Remember ``values`` (e.g. ``tuning_seconds_per_step=0.41``) for ``key``; later values of
    the same names replace earlier ones. Failing to write only costs the estimate."""
    data = _read()
    entry = data.get(key) if isinstance(data.get(key), dict) else {}
    entry.update(values)
    data[key] = entry
    try:
        atomic_write_json(timings_path(), data)
    except OSError as exc:
        log.warning("could not record timings in %s (%s)", timings_path(), exc)


def measured_speed(key: str) -> dict[str, Any]:
    """What was recorded for ``key`` (empty when nothing was)."""
    entry = _read().get(key)
    return dict(entry) if isinstance(entry, dict) else {}

"""Project folders: one per person, holding every stage's artifacts (see docs/ARCHITECTURE.md).

The manifest ``project.json`` records a schema version, settings, source paths and, per stage, a
fingerprint of what the stage produced plus the fingerprints of the upstream stages it consumed.
Why fingerprints: when an upstream stage is re-run (a new self-scan, a re-tuned generator) every
downstream stage becomes *stale* instead of silently reusing outputs made from the old inputs.
All writes are atomic.
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personalize.errors import ProjectError
from personalize.fileio import atomic_write_json, read_json

SCHEMA_VERSION = 1
MANIFEST = "project.json"

# Stages in pipeline order, and the upstream stages each one consumes.
STAGES: tuple[str, ...] = ("capture", "prepare", "select", "personalize", "reenact", "edit", "export")
UPSTREAM: dict[str, tuple[str, ...]] = {
    "capture": (),
    "prepare": ("capture",),
    "select": ("prepare",),
    "personalize": ("select",),
    "reenact": ("personalize",),
    "edit": ("personalize",),
    "export": ("reenact",),
}
SUBFOLDERS = ("scan", "dataset", "model", "takes", "styles", "directions")

NOT_DONE, RUNNING, DONE, STALE = "not done", "running", "done", "stale"


def file_fingerprint(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex); used to notice that a source video changed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Project:
    """An open project folder. Create with ``Project.create`` or ``Project.open``."""

    root: Path
    manifest: dict[str, Any]

    # ----------------------------------------------------------------- create / open / save
    @classmethod
    def create(cls, path: str | os.PathLike[str], name: str | None = None) -> "Project":
        root = Path(path).expanduser().resolve()
        if (root / MANIFEST).exists():
            raise ProjectError(f"A project already exists at {root}.",
                               "Open it instead (studio-cli info PATH), or choose another folder.")
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} is a file, not a folder.", "Choose a folder path for the project.")
        if root.exists() and any(root.iterdir()):
            raise ProjectError(f"{root} is not empty.", "Choose a new or empty folder for the project.")
        root.mkdir(parents=True, exist_ok=True)
        for sub in SUBFOLDERS:
            (root / sub).mkdir(exist_ok=True)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name or root.stem,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "settings": {},
            "sources": {},
            "stages": {},
        }
        project = cls(root, manifest)
        project.save()
        return project

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "Project":
        root = Path(path).expanduser().resolve()
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise ProjectError(f"No studio project at {root} (no {MANIFEST}).",
                               "Create one with: studio-cli new PATH")
        try:
            manifest = read_json(manifest_path)
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{manifest_path} is unreadable or corrupt ({exc}).",
                               "Restore it from a backup, or create a new project.") from exc
        if not isinstance(manifest, dict) or "schema_version" not in manifest:
            raise ProjectError(f"{manifest_path} is not a studio manifest.", "Create a new project.")
        version = manifest["schema_version"]
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ProjectError(f"This project was written by a newer studio (schema {version}).",
                               "Update the studio to open it.")
        for sub in SUBFOLDERS:
            (root / sub).mkdir(exist_ok=True)
        manifest.setdefault("settings", {})
        manifest.setdefault("sources", {})
        manifest.setdefault("stages", {})
        return cls(root, manifest)

    def save(self) -> None:
        atomic_write_json(self.root / MANIFEST, self.manifest)

    def reload(self) -> None:
        self.manifest = Project.open(self.root).manifest

    # ----------------------------------------------------------------- folders
    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.stem))

    @property
    def scan_dir(self) -> Path:
        return self.root / "scan"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def takes_dir(self) -> Path:
        return self.root / "takes"

    @property
    def styles_dir(self) -> Path:
        return self.root / "styles"

    @property
    def directions_dir(self) -> Path:
        return self.root / "directions"

    def take_dir(self, take: str) -> Path:
        return self.takes_dir / safe_name(take, "take")

    def style_dir(self, style: str) -> Path:
        return self.styles_dir / safe_name(style, "style")

    # ----------------------------------------------------------------- stage bookkeeping
    def _stage(self, stage: str) -> dict[str, Any]:
        if stage not in UPSTREAM:
            raise ValueError(f"unknown stage {stage!r}")
        return self.manifest["stages"].setdefault(stage, {})

    def mark_running(self, stage: str) -> None:
        entry = self._stage(stage)
        entry["running"] = {"pid": os.getpid(), "since": time.time()}
        self.save()

    def mark_done(self, stage: str, **info: Any) -> None:
        """Record that ``stage`` finished; ``info`` (JSON-able) is kept for display."""
        entry = self._stage(stage)
        entry.pop("running", None)
        entry["fingerprint"] = uuid.uuid4().hex
        entry["inputs"] = {up: self.fingerprint(up) for up in UPSTREAM[stage]}
        entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        entry["info"] = info
        self.save()

    def mark_stopped(self, stage: str) -> None:
        """The job ended without finishing (cancelled or failed); its partial work stays for resume."""
        entry = self._stage(stage)
        entry.pop("running", None)
        self.save()

    def fingerprint(self, stage: str) -> str | None:
        return self.manifest["stages"].get(stage, {}).get("fingerprint")

    def stage_info(self, stage: str) -> dict[str, Any]:
        return dict(self.manifest["stages"].get(stage, {}).get("info", {}))

    def status(self, stage: str) -> str:
        """One of 'not done', 'running', 'done', 'stale'."""
        entry = self.manifest["stages"].get(stage, {})
        running = entry.get("running")
        if running and _pid_alive(int(running.get("pid", -1))):
            return RUNNING
        if "fingerprint" not in entry:
            return NOT_DONE
        for up, seen in entry.get("inputs", {}).items():
            if self.fingerprint(up) != seen or self.status(up) == STALE:
                return STALE
        return DONE

    def statuses(self) -> dict[str, str]:
        return {stage: self.status(stage) for stage in STAGES}

    def require(self, stage: str, for_what: str) -> None:
        """Raise a ProjectError naming the missing stage and the command that makes it."""
        state = self.status(stage)
        if state == DONE:
            return
        command = {"capture": "studio-cli prepare PROJECT --video FILE",
                   "prepare": "studio-cli prepare PROJECT --video FILE",
                   "select": "studio-cli select PROJECT",
                   "personalize": "studio-cli personalize PROJECT --base ffhq",
                   "reenact": "studio-cli reenact PROJECT --driving FILE --name TAKE"}.get(stage, stage)
        detail = "is stale (an earlier stage changed)" if state == STALE else f"is {state}"
        raise ProjectError(f"{for_what} needs the '{stage}' stage, which {detail}.",
                           f"Run first: {command.replace('PROJECT', str(self.root))}")


def safe_name(name: str, what: str) -> str:
    """Validate a user-given take/style/direction name so it is one safe folder name."""
    cleaned = name.strip()
    if not cleaned or cleaned in {".", ".."} or any(c in cleaned for c in '/\\:*?"<>|\0'):
        raise ProjectError(f"'{name}' is not a valid {what} name.",
                           "Use letters, digits, spaces, '-' or '_' (no slashes).")
    return cleaned


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True

"""Project folders: one per person, holding every stage's artifacts (see docs/ARCHITECTURE.md).

This module is the one owner of the folder's layout: every path inside a project, and every
reader of a project file the studio shows or consumes, is a ``Project`` method. Jobs, the CLI and
the GUI ask it; lower layers receive the plain paths.

The manifest ``project.json`` records a schema version, settings, source paths and, per stage, a
fingerprint of what the stage produced plus the fingerprints of the upstream stages it consumed.
Why fingerprints: when an upstream stage is re-run (a new self-scan, a re-tuned generator) every
downstream stage becomes *stale* instead of silently reusing outputs made from the old inputs.
All writes are atomic.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from personalize.errors import Action, ProjectError, UserError
from personalize.fileio import atomic_write_json, read_json

if TYPE_CHECKING:
    from optimize.image_take import ImageTake
    from optimize.track import TrackProgress

SCHEMA_VERSION = 1
MANIFEST = "project.json"

# Stages in pipeline order, and the upstream stages each one consumes. STAGES are the steps with a
# page of their own in the GUI; PIPELINE adds the ones without (the motion model of the fast
# re-enactment modes and live driving, trained from the Re-enact page or ``studio-cli motion-model``).
STAGES: tuple[str, ...] = ("capture", "prepare", "select", "personalize", "reenact", "edit", "export")
PIPELINE: tuple[str, ...] = ("capture", "prepare", "select", "personalize", "motion", "reenact", "edit",
                             "export")
UPSTREAM: dict[str, tuple[str, ...]] = {
    "capture": (),
    "prepare": ("capture",),
    "select": ("prepare",),
    "personalize": ("select",),
    "motion": ("personalize",),
    "reenact": ("personalize",),
    "edit": ("personalize",),
    "export": ("reenact",),
}
SUBFOLDERS = ("scan", "dataset", "model", "takes", "styles", "directions")

NOT_DONE, RUNNING, DONE, STALE = "not done", "running", "done", "stale"

# File names inside the folders (the writers receive the paths composed from these). A writer that
# is given a whole folder names the files in it (scan/ and a take's crops: personalize.faces.prepare;
# model/: personalize.tuning; styles/<name>/: editing.nada); the readers below import those names.
SOURCE_STEM = "source"                   # scan/source.<ext>: the self-scan video's copy
DRIVING_STEM = "driving"                 # takes/<name>/driving.<ext>: the driving video's copy
CAPTURE_DIR = "capture"                  # webcam recordings
EXPORTS_DIR = "exports"                  # the GUI's default place for exported videos
SELECTION_FILE = "selection.json"        # dataset/
INVERSION_FILE = "inversion.json"        # dataset/
DATASET_ANCHORS = "anchors.npy"          # dataset/: the inversion's anchors
INVERSION_PROGRESS = "inversion_progress.npz"  # dataset/: finished batches of a running inversion
TRACK_FILE = "latents.npz"               # takes/<name>/: the latent track
TRACK_INFO = "track.json"                # takes/<name>/: settings, timings, flagged frames
CHUNKS_DIR = "chunks"                    # takes/<name>/: a take re-enacted in chunks (plan, chunk tracks)
DRIVING_KEYPOINTS = "driving_keypoints.npz"  # takes/<name>/: MediaPipe on the aligned crops
PREVIEW_FILE = "preview.mp4"             # takes/<name>/: the GUI's quick render
ANCHOR_KEYPOINTS = ".anchor_keypoints.npz"  # takes/: the anchors' keypoints, shared by every take
MOTION_DIR = "motion"                    # model/motion/: the motion model (optimize.fast_directions names the files)
LIVE_PREFIX = "live"                     # capture/live_<time>.mp4: webcam recordings of live driving


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
                               "Open it instead, or choose another folder.")
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
                               "Create a project there first, or open another folder.", Action("new"))
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

    @property
    def capture_dir(self) -> Path:
        return self.root / CAPTURE_DIR

    @property
    def exports_dir(self) -> Path:
        """Where the GUI suggests saving exports (the CLI writes wherever --out says)."""
        return self.root / EXPORTS_DIR

    def take_dir(self, take: str) -> Path:
        return self.takes_dir / safe_name(take, "take")

    def style_dir(self, style: str) -> Path:
        return self.styles_dir / safe_name(style, "style")

    # ----------------------------------------------------------------- scan and dataset
    def scan_source(self) -> Path | None:
        """The project's copy of the self-scan video (``scan/source.<ext>``), if any."""
        return _video_copy(self.scan_dir, SOURCE_STEM)

    def scan_source_path(self, suffix: str) -> Path:
        """Where a self-scan copy with this suffix (e.g. '.mp4') goes."""
        return self.scan_dir / f"{SOURCE_STEM}{suffix}"

    @property
    def scan_record(self) -> dict[str, Any]:
        """What the capture job recorded about the self-scan: ``original`` (the chosen file),
        ``sha256`` (of the chosen file), ``trim`` ([start, end] seconds or None), ``copy``
        (relative path of the copy the later stages read); {} before any capture."""
        record = self.manifest.get("sources", {}).get("scan")
        return dict(record) if isinstance(record, dict) else {}

    @property
    def scan_crops_dir(self) -> Path:
        from personalize.faces.prepare import CROPS_DIR

        return self.scan_dir / CROPS_DIR

    def scan_crop_paths(self) -> list[Path]:
        """The prepared scan's aligned crops (``scan/crops/{t:06d}.png``), in frame order."""
        crops = self.scan_crops_dir
        return sorted(crops.glob("*.png")) if crops.is_dir() else []

    def read_scan_quality(self) -> dict[str, Any] | None:
        """``scan/quality.json`` as the prepare stage wrote it (``personalize.faces.quality``:
        ``summary`` and per-frame records with ``t`` and ``flags``), or None if absent/unreadable."""
        from personalize.faces.prepare import QUALITY_FILE

        data = _read_json_or_none(self.scan_dir / QUALITY_FILE)
        return data if isinstance(data, dict) else None

    @property
    def scan_landmarks_path(self) -> Path:
        from personalize.faces.prepare import LANDMARKS_FILE

        return self.scan_dir / LANDMARKS_FILE

    def read_scan_landmarks(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(crop_landmarks (T,478,3) float32 in crop pixels, valid (T,) bool) of the prepared
        scan, or None when it is not prepared (or its file is unreadable)."""
        path = self.scan_landmarks_path
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["crop_landmarks"].astype(np.float32), data["valid"].astype(bool)
        except (OSError, KeyError, ValueError):
            return None

    def scan_crop_size(self) -> int | None:
        """Side in pixels of the prepared scan's crops (the landmarks' pixel units), or None."""
        try:
            with np.load(self.scan_landmarks_path, allow_pickle=False) as data:
                return int(data["size"])
        except (OSError, KeyError, ValueError, TypeError):
            return None
    def scan_source_frame(self, frame: int | None = None) -> tuple[Path, np.ndarray]:
        """A prepared scan frame to re-enact with a one-shot mode: (its aligned crop's path, its
        MediaPipe landmarks (478,3) in the crop's pixels). ``frame`` None picks the sharpest
        frontal frame (``personalize.faces.quality.sharpest_frontal``)."""
        from personalize.faces.quality import sharpest_frontal

        crops, landmarks = self.scan_crop_paths(), self.read_scan_landmarks()
        if not crops or landmarks is None:
            raise ProjectError("The self-scan is not prepared yet.", "Prepare the self-scan first.",
                               Action("prepare"))
        points, valid = landmarks
        if frame is None:
            quality = self.read_scan_quality() or {}
            frame = sharpest_frontal(quality.get("frames", []))
            if frame is None:
                frame = int(np.flatnonzero(valid)[0]) if valid.any() else 0
        if not 0 <= frame < len(crops):
            raise UserError(f"The self-scan has frames 0 to {len(crops) - 1}; there is no frame {frame}.",
                            "Give a frame number in that range, or an image file.")
        if not valid[frame]:
            raise UserError(f"No face was found in frame {frame} of the self-scan.",
                            "Choose another frame (or leave the source out: the sharpest frontal frame "
                            "is then used).")
        return crops[frame], points[frame]

    @property
    def selection_path(self) -> Path:
        return self.dataset_dir / SELECTION_FILE

    def read_selection(self) -> dict[str, Any] | None:
        """``dataset/selection.json`` (``frame_ids``, ``requested``, ``coverage``...), or None
        before the select stage; ProjectError when it is damaged."""
        path = self.selection_path
        if not path.is_file():
            return None
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{path} is unreadable ({exc}).", "Select the frames again.",
                               Action("select")) from exc
        if not isinstance(data, dict) or not isinstance(data.get("frame_ids"), list):
            raise ProjectError(f"{path} is not a frame selection.", "Select the frames again.",
                               Action("select"))
        return data

    @property
    def dataset_anchors_path(self) -> Path:
        """The inversion's anchors (``dataset/anchors.npy``), row i <-> selection frame_ids[i]."""
        return self.dataset_dir / DATASET_ANCHORS

    @property
    def inversion_path(self) -> Path:
        return self.dataset_dir / INVERSION_FILE

    @property
    def inversion_progress_path(self) -> Path:
        """The anchors of the batches finished so far while inverting (removed when it is done)."""
        return self.dataset_dir / INVERSION_PROGRESS

    # ----------------------------------------------------------------- the personalized generator
    @property
    def generator_path(self) -> Path:
        from personalize.tuning import GENERATOR_FILE

        return self.model_dir / GENERATOR_FILE

    @property
    def anchors_path(self) -> Path:
        """The anchors saved with the personalized generator (``model/anchors.npy``)."""
        from personalize.tuning import ANCHORS_FILE

        return self.model_dir / ANCHORS_FILE

    @property
    def tuning_log_path(self) -> Path:
        """The tuning's loss log (``model/log.csv``: a header, then one row per step)."""
        from personalize.tuning import LOG_FILE

        return self.model_dir / LOG_FILE

    def newest_preview(self) -> Path | None:
        """The newest preview grid the tuning wrote (generated | real), if any."""
        from personalize.tuning import PREVIEWS_DIR

        folder = self.model_dir / PREVIEWS_DIR
        images = sorted(folder.glob("*.png"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []
        return images[-1] if images else None

    def has_tuning_checkpoint(self) -> bool:
        """True when a stopped tuning can resume (its checkpoint folder is not empty)."""
        from personalize.tuning import CHECKPOINTS_DIR

        return any((self.model_dir / CHECKPOINTS_DIR).glob("*"))

    def require_generator(self) -> Path:
        """The personalized generator's file; ProjectError saying how to make it when missing."""
        path = self.generator_path
        if not path.is_file():
            raise ProjectError(f"The personalized generator {path} is missing.",
                               "Personalize the generator (again).", Action("personalize"))
        return path

    def generator_id(self) -> str:
        """Identifies the personalized generator's weights (the stage's fingerprint and the
        file's size and time): part of the fingerprints of what is made from it."""
        stat = self.require_generator().stat()
        return f"{self.fingerprint('personalize')}:{stat.st_size}:{stat.st_mtime_ns}"

    def generator_shape(self) -> tuple[int | None, int | None]:
        """(w_dim, num_ws) of the personalized generator from its JSON sidecar, without loading
        it; (None, None) when unknown."""
        from personalize.stylegan2.checkpoint_io import sidecar_path

        meta = _read_json_or_none(sidecar_path(self.generator_path))
        if not isinstance(meta, dict):
            return None, None
        kwargs = meta.get("init_kwargs", {})
        w_dim = kwargs.get("w_dim") if isinstance(kwargs, dict) else None
        num_ws = meta.get("num_ws")
        if num_ws is None and isinstance(kwargs, dict) and kwargs.get("img_resolution"):
            num_ws = int(2 * np.log2(int(kwargs["img_resolution"])) - 2)
        return (int(w_dim) if w_dim else None), (int(num_ws) if num_ws else None)

    def has_anchors(self) -> bool:
        """True once personalization wrote anchors (valid or not: ``load_anchors`` checks)."""
        return self.anchors_path.is_file() or self.dataset_anchors_path.is_file()

    def load_anchors(self) -> np.ndarray:
        """The person's anchors (N, w_dim) float32, finite: ``model/anchors.npy`` (saved with the
        generator), else ``dataset/anchors.npy``. ProjectError saying what to do otherwise."""
        for path in (self.anchors_path, self.dataset_anchors_path):
            if not path.is_file():
                continue
            try:
                anchors = np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as exc:
                raise ProjectError(f"{path} is unreadable ({exc}).", "Personalize the generator again.",
                                   Action("personalize")) from exc
            if anchors.ndim != 2 or anchors.shape[0] < 1 or not np.isfinite(anchors).all():
                raise ProjectError(f"{path} does not hold valid anchors (N, w_dim) of finite values.",
                                   "Personalize the generator again.", Action("personalize"))
            return anchors
        raise ProjectError("This project has no anchors (the person's latent codes).",
                           "Personalize the generator first.", Action("personalize"))

    # ----------------------------------------------------------------- the motion model (fast modes, live)
    @property
    def motion_dir(self) -> Path:
        """The motion model's folder (``model/motion/``): weights, descriptor, pool, checkpoints."""
        return self.model_dir / MOTION_DIR

    def has_motion_model(self) -> bool:
        """True when a finished motion model is on disk (its ``motion.json`` is written last)."""
        from optimize.fast_directions import INFO_FILE

        return (self.motion_dir / INFO_FILE).is_file()

    def read_motion_info(self) -> dict[str, Any]:
        """The finished motion model's record (``motion.json``: settings, held-out errors), {} before one."""
        from optimize.fast_directions import INFO_FILE

        data = _read_json_or_none(self.motion_dir / INFO_FILE)
        return data if isinstance(data, dict) else {}

    def live_recording_path(self, stamp: str) -> Path:
        """Where a live session's webcam recording goes (``capture/live_<stamp>.mp4``)."""
        return self.capture_dir / f"{LIVE_PREFIX}_{safe_name(stamp, 'recording')}.mp4"

    # ----------------------------------------------------------------- takes
    def takes(self) -> list[str]:
        """Every take, finished or not: a folder under ``takes/`` holding a driving video copy
        or a latent track."""
        if not self.takes_dir.is_dir():
            return []
        return sorted(p.name for p in self.takes_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".")
                      and (_video_copy(p, DRIVING_STEM) is not None or (p / TRACK_FILE).is_file()))

    def driving_copy(self, take: str) -> Path | None:
        """The take's copy of its driving video (``takes/<name>/driving.<ext>``), if any."""
        return _video_copy(self.take_dir(take), DRIVING_STEM)

    def driving_copy_path(self, take: str, suffix: str) -> Path:
        """Where a driving video copy with this suffix (e.g. '.mov') goes."""
        return self.take_dir(take) / f"{DRIVING_STEM}{suffix}"

    def track_path(self, take: str) -> Path:
        return self.take_dir(take) / TRACK_FILE

    def take_chunks_dir(self, take: str) -> Path:
        """A take re-enacted in chunks (``optimize.chunks``): the plan and one track per chunk."""
        return self.take_dir(take) / CHUNKS_DIR

    def track_info_path(self, take: str) -> Path:
        return self.take_dir(take) / TRACK_INFO

    def driving_keypoints_path(self, take: str) -> Path:
        return self.take_dir(take) / DRIVING_KEYPOINTS

    def preview_path(self, take: str) -> Path:
        return self.take_dir(take) / PREVIEW_FILE

    @property
    def anchor_keypoints_cache(self) -> Path:
        """The anchors' rendered keypoints, shared by every take of this generator."""
        return self.takes_dir / ANCHOR_KEYPOINTS

    def image_take(self, take: str) -> "ImageTake":
        """The image-take files of ``take`` (a one-shot backend's output frames, plan and source)."""
        from optimize.image_take import ImageTake

        return ImageTake(self.take_dir(take))

    def take_output(self, take: str) -> str:
        """'images' for a one-shot backend's take (it holds output frames), else 'latents'."""
        return "images" if self.image_take(take).exists() else "latents"

    def take_backend(self, take: str) -> str:
        """The re-enactment mode that made the take ('personal' for latent tracks)."""
        if self.take_output(take) == "latents":
            return "personal"
        try:
            return str(self.image_take(take).read_plan_arrays()["backend"])
        except (ProjectError, KeyError):
            return "unknown"

    def take_progress(self, take: str) -> "TrackProgress | None":
        """How far the take got (its latent track, or its output frames); None when unreadable."""
        from optimize.track import TrackProgress, read_track_progress

        try:
            if self.take_output(take) == "images":
                done = self.image_take(take).progress()
                return TrackProgress(done.frames_done, done.n_frames, done.complete)
            return read_track_progress(self.track_path(take))
        except (ProjectError, OSError, ValueError, KeyError):
            return None

    def take_is_complete(self, take: str) -> bool:
        """True when the take's latent track is finished (every frame and the smoothing)."""
        progress = self.take_progress(take)
        return progress is not None and progress.complete

    def read_take_info(self, take: str) -> dict[str, Any]:
        """``track.json`` of a finished run of the take, {} before one."""
        data = _read_json_or_none(self.track_info_path(take))
        return data if isinstance(data, dict) else {}

    def delete_take(self, take: str) -> None:
        """Remove the take's folder (driving copy, crops, track, preview). ProjectError if the
        take does not exist."""
        import shutil

        folder = self._existing_take(take)
        shutil.rmtree(folder)

    def rename_take(self, take: str, new_name: str) -> str:
        """Rename a take (its folder); returns the new name. ProjectError for an invalid or
        taken name. A finished run's record keeps its new name."""
        folder = self._existing_take(take)
        target = self.take_dir(new_name)
        if target.exists():
            raise ProjectError(f"A take named '{target.name}' already exists.", "Choose another name.")
        folder.rename(target)
        info = self.read_take_info(target.name)
        if info.get("take") == take:
            info["take"] = target.name
            atomic_write_json(self.track_info_path(target.name), info)
        return target.name

    def _existing_take(self, take: str) -> Path:
        folder = self.take_dir(take)
        if take not in self.takes() or not folder.is_dir():
            raise ProjectError(f"No take named '{take}' in {self.takes_dir}.",
                               "Pick one of the listed takes.")
        return folder

    def learn_cache_path(self, attribute: str) -> Path:
        """Partial sample scores of an interrupted 'learn direction' (resume)."""
        return self.directions_dir / f".learn_{safe_name(attribute, 'attribute')}.npz"

    # ----------------------------------------------------------------- styles and directions
    def styles(self) -> list[str]:
        """Finished styles (their ``style.json`` is written last)."""
        from editing.nada import STYLE_META

        if not self.styles_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.styles_dir.glob(f"*/{STYLE_META}"))

    def style_generator_path(self, style: str) -> Path:
        """The stylized generator of ``style``; UserError listing the styles when it is missing."""
        from editing.nada import STYLE_GENERATOR

        path = self.style_dir(style) / STYLE_GENERATOR
        if not path.is_file():
            available = ", ".join(self.styles()) or "none"
            raise UserError(f"No style named '{style}' in {self.styles_dir}.",
                            f"Available: {available}. Create it first.", Action("stylize", style))
        return path

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
        return {stage: self.status(stage) for stage in PIPELINE}

    def require(self, stage: str, for_what: str) -> None:
        """Raise a ProjectError naming the missing stage (its ``action`` is that stage)."""
        state = self.status(stage)
        if state == DONE:
            return
        detail = "is stale (an earlier stage changed)" if state == STALE else f"is {state}"
        raise ProjectError(f"{for_what} needs the '{stage}' stage, which {detail}.",
                           f"Run the {stage} stage first.", Action(stage))


def safe_name(name: str, what: str) -> str:
    """Validate a user-given take/style/direction name so it is one safe folder name."""
    cleaned = name.strip()
    if not cleaned or cleaned in {".", ".."} or any(c in cleaned for c in '/\\:*?"<>|\0'):
        raise ProjectError(f"'{name}' is not a valid {what} name.",
                           "Use letters, digits, spaces, '-' or '_' (no slashes).")
    return cleaned


def _video_copy(folder: Path, stem: str) -> Path | None:
    """The video copy ``<stem>.<ext>`` kept in a project folder, if any."""
    for path in sorted(folder.glob(f"{stem}.*")):
        if path.is_file() and not path.name.startswith("."):
            return path
    return None


def _read_json_or_none(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (display readers)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None


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

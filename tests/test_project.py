"""Project folders: creation, manifest round trip, stage status and staleness, atomic writes, CLI."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from personalize.errors import Action, ProjectError, UserError
from personalize.fileio import atomic_path, atomic_write_json
from studio.cli import main
from studio.project import DONE, NOT_DONE, STALE, Project, SCHEMA_VERSION


def test_create_makes_layout_and_manifest(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "anna.studio")
    for sub in ("scan", "dataset", "model", "takes", "styles", "directions"):
        assert (project.root / sub).is_dir()
    manifest = json.loads((project.root / "project.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["name"] == "anna"
    assert all(state == NOT_DONE for state in project.statuses().values())


def test_create_refuses_existing_or_non_empty(tmp_path: Path) -> None:
    Project.create(tmp_path / "p")
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(tmp_path / "p")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ProjectError, match="not empty"):
        Project.create(tmp_path / "full")


def test_open_errors_are_actionable(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="Create a project") as err:
        Project.open(tmp_path)
    assert err.value.action == Action("new")
    (tmp_path / "project.json").write_text("{ not json")
    with pytest.raises(ProjectError, match="corrupt"):
        Project.open(tmp_path)
    (tmp_path / "project.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ProjectError, match="newer studio"):
        Project.open(tmp_path)


def test_rerunning_an_upstream_stage_marks_downstream_stale(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    for stage in ("capture", "prepare", "select", "personalize", "reenact"):
        project.mark_done(stage)
    assert project.status("reenact") == DONE
    project.mark_done("select")  # e.g. the user re-selected frames
    reopened = Project.open(project.root)
    assert reopened.status("select") == DONE
    assert reopened.status("personalize") == STALE
    assert reopened.status("reenact") == STALE  # stale propagates down the chain
    assert reopened.status("prepare") == DONE
    with pytest.raises(ProjectError, match="stale") as err:
        reopened.require("personalize", "Re-enactment")
    assert err.value.action == Action("personalize")


def test_running_stage_of_a_dead_process_is_not_running(tmp_path: Path) -> None:
    project = Project.create(tmp_path / "p")
    project.mark_running("prepare")
    assert project.status("prepare") == "running"
    project.manifest["stages"]["prepare"]["running"]["pid"] = 2 ** 22 + 12345  # no such process
    assert project.status("prepare") == NOT_DONE


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "trunc')
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]  # no temp file left behind


def test_cli_new_and_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "my avatar ü.studio"  # spaces and non-ASCII in the path
    assert main(["new", str(root)]) == 0
    assert "created project" in capsys.readouterr().out
    assert main(["info", str(root), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stages"]["personalize"] == NOT_DONE
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "No studio project" in err and "Traceback" not in err
    assert f"studio-cli new {shlex.quote(str(tmp_path / 'nowhere'))}" in err


def test_cli_hints_name_commands_that_work_when_pasted(tmp_path: Path, capsys) -> None:
    """The next step is printed with the project path quoted (spaces, quotes), so pasting it runs
    on the right folder."""
    root = tmp_path / "my avatar's project.studio"
    Project.create(root)
    assert main(["select", str(root)]) == 2
    err = capsys.readouterr().err
    step = next(line for line in err.splitlines() if "studio-cli prepare" in line)
    argv = shlex.split(step.split("run:", 1)[1])
    assert argv[:3] == ["studio-cli", "prepare", str(root)] and argv[3:] == ["--video", "FILE"]
    assert main(["new", str(tmp_path / "second one")]) == 0
    out = capsys.readouterr().out
    assert shlex.split(out.splitlines()[-1].split("next:", 1)[1])[2] == str(tmp_path / "second one")


def test_layout_readers(tmp_path: Path) -> None:
    """Takes, styles, anchors and the generator are found by one rule each (``Project``)."""
    project = Project.create(tmp_path / "p")
    for name, files in (("unfinished", ["driving.mp4"]), ("tracked", ["latents.npz"]),
                        ("empty", []), (".hidden", ["driving.mp4"])):
        folder = project.takes_dir / name
        folder.mkdir()
        for file in files:
            (folder / file).write_bytes(b"x")
    (project.takes_dir / ".anchor_keypoints.npz").write_bytes(b"x")
    assert project.takes() == ["tracked", "unfinished"]
    assert project.driving_copy("unfinished").name == "driving.mp4"
    assert not project.take_is_complete("tracked")                 # unreadable track: not finished
    with pytest.raises(UserError, match="No style named 'sketch'") as err:
        project.style_generator_path("sketch")
    assert err.value.action == Action("stylize", "sketch")
    style = project.style_dir("sketch")
    style.mkdir()
    (style / "generator.safetensors").write_bytes(b"x")
    assert project.styles() == []                                   # unfinished: no style.json yet
    (style / "style.json").write_text("{}")
    assert project.styles() == ["sketch"]
    assert project.style_generator_path("sketch") == style / "generator.safetensors"
    with pytest.raises(ProjectError, match="personalize"):
        project.require_generator()
    with pytest.raises(ProjectError, match="no anchors"):
        project.load_anchors()


def test_anchors_with_non_finite_values_are_refused_everywhere(tmp_path: Path, capsys) -> None:
    """One anchors reader (with the finite check) serves re-enactment and editing alike."""
    project = Project.create(tmp_path / "p")
    (project.model_dir / "generator.json").write_text(json.dumps(
        {"init_kwargs": {"w_dim": 8, "img_resolution": 64}, "num_ws": 10}))
    anchors = np.ones((4, 8), np.float32)
    anchors[2, 3] = np.nan
    np.save(project.model_dir / "anchors.npy", anchors)
    with pytest.raises(ProjectError, match="finite") as err:
        project.load_anchors()
    assert err.value.action == Action("personalize")
    np.save(tmp_path / "d.npy", np.ones(8, np.float32))
    assert main(["directions", "import", str(project.root), str(tmp_path / "d.npy"), "--name", "d"]) == 2
    assert "finite" in capsys.readouterr().err


def test_cli_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "new" in capsys.readouterr().out

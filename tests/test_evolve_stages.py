"""Stage manifests: skip when finished, resume an unfinished attempt, refuse changed inputs, force, damaged files."""

import json

import pytest

from rstar_jax.evolve.stages import StageRefused, Stages, diff_inputs, digest


def _body(stage_dir, calls, text="data"):
    def body():
        calls.append(1)
        out = stage_dir / "out.txt"
        out.write_text(text)
        return {"files": [out], "counts": {"records": len(text)}, "metrics": {"m": 1.5}}

    return body


def test_finished_stage_is_skipped_and_outputs_recorded(tmp_path):
    stage_dir, calls = tmp_path / "s", []
    out = Stages().run(stage_dir, "s", {"a": 1, "t": (1, 2)}, _body(stage_dir, calls))
    assert calls == [1] and out["counts"] == {"records": 4} and out["metrics"] == {"m": 1.5}
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["inputs"] == {"a": 1, "t": [1, 2]} and manifest["attempts"] == 1
    assert set(manifest["outputs"]["files"]) == {"out.txt"}
    again = Stages().run(stage_dir, "s", {"a": 1, "t": (1, 2)}, _body(stage_dir, calls))
    assert calls == [1], "a finished stage ran again"
    assert again == out and digest(again) == digest(out)


def test_changed_inputs_are_refused_then_forced(tmp_path):
    stage_dir, calls = tmp_path / "s", []
    Stages().run(stage_dir, "s", {"steps": 4}, _body(stage_dir, calls))
    with pytest.raises(StageRefused, match=r"steps: 4 -> 5.*evolve.force"):
        Stages().run(stage_dir, "s", {"steps": 5}, _body(stage_dir, calls))
    assert calls == [1]
    forced = Stages(force=True)
    out = forced.run(stage_dir, "s", {"steps": 5}, _body(stage_dir, calls, "new data"))
    assert calls == [1, 1] and out["counts"] == {"records": 8} and forced.redone == [str(stage_dir)]


def test_unfinished_attempt_resumes_and_counts_attempts(tmp_path):
    stage_dir, calls = tmp_path / "s", []

    def crash():
        (stage_dir / "partial.txt").write_text("kept")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Stages().run(stage_dir, "s", {"a": 1}, crash)
    assert (stage_dir / "started.json").exists() and not (stage_dir / "manifest.json").exists()
    Stages().run(stage_dir, "s", {"a": 1}, _body(stage_dir, calls))
    assert (stage_dir / "partial.txt").read_text() == "kept", "resuming must not wipe partial work"
    assert json.loads((stage_dir / "manifest.json").read_text())["attempts"] == 2
    with pytest.raises(StageRefused, match="unfinished attempt"):
        (stage_dir / "manifest.json").unlink()
        Stages().run(stage_dir, "s", {"a": 2}, _body(stage_dir, calls))


def test_damaged_output_reruns_the_stage(tmp_path):
    stage_dir, calls = tmp_path / "s", []
    Stages().run(stage_dir, "s", {"a": 1}, _body(stage_dir, calls))
    (stage_dir / "out.txt").write_text("tampered")
    stages = Stages()
    stages.run(stage_dir, "s", {"a": 1}, _body(stage_dir, calls))
    assert calls == [1, 1] and (stage_dir / "out.txt").read_text() == "data" and stages.redone


def test_diff_inputs_names_nested_keys():
    assert diff_inputs({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 0}) == ["a.c: 2 -> 3", "d: None -> 0"]

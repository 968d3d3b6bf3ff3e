"""Stage bookkeeping: every stage of a round records a manifest, and a rerun resumes at the first unfinished one.

    stages = Stages(force=cfg.evolve.force)
    out = stages.run(round_dir / "trees", "round_2/trees", inputs={...}, body=make_trees)

A stage owns one directory. `run`:
1. with a `manifest.json` whose inputs equal the current ones and whose output files still match their
   checksums: the stage is finished; its recorded outputs are returned and nothing is redone;
2. with a manifest (or a `started.json` of an unfinished attempt) made from OTHER inputs: `StageRefused`, naming
   what changed, unless `force`, which clears the directory and reruns the stage;
3. otherwise it writes `started.json` (inputs, attempt number, time) and calls `body()`. Bodies are resumable
   themselves (the search appends finished batches, training restores its latest checkpoint), so a killed
   attempt continues where it stopped. `body()` returns `{"files": [paths], "counts": {...}, "metrics": {...}}`;
   the manifest (inputs, output files with sha256 and size, counts, metrics, attempts, seconds of the last
   attempt) is written last, atomically: it is the commit marker.

`digest(outputs)` fingerprints a finished stage; downstream stages put it in their inputs, so retraining a policy
invalidates the trees searched with the old one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import logging

from rstar_jax.workdir import file_sha256, write_json

__all__ = ["StageOutputs", "StageRefused", "Stages", "diff_inputs", "digest"]

StageOutputs = dict[str, Any]
MANIFEST = "manifest.json"
STARTED = "started.json"


class StageRefused(RuntimeError):
    """A finished (or partly done) stage was made from other inputs; rerun with `--config.evolve.force=true`."""


def diff_inputs(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Readable differences between two JSON-like values: `["search.rollouts: 8 -> 16", ...]`."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [d for k in keys for d in diff_inputs(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)]
    return [] if old == new else [f"{prefix or '<root>'}: {old!r} -> {new!r}"]


def digest(outputs: StageOutputs) -> str:
    """A fingerprint of a finished stage's outputs (file checksums and counts)."""
    payload = json.dumps({"files": outputs.get("files", {}), "counts": outputs.get("counts", {})}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """Inputs as they will read back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(value, sort_keys=True))


class Stages:
    """Runs stages with manifests (module docstring). `timings` collects each stage's seconds by name."""

    def __init__(self, *, force: bool = False):
        self.force = force
        self.timings: dict[str, float] = {}
        self.redone: list[str] = []

    def finished(self, stage_dir: Path) -> StageOutputs | None:
        """The recorded outputs of a finished stage (manifest present), without checking inputs."""
        path = Path(stage_dir) / MANIFEST
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))["outputs"]

    def _intact(self, stage_dir: Path, files: dict[str, dict[str, Any]]) -> list[str]:
        bad = []
        for rel, meta in files.items():
            path = stage_dir / rel
            if not path.is_file() or file_sha256(path) != meta["sha256"]:
                bad.append(rel)
        return bad

    def _clear(self, stage_dir: Path, why: str) -> None:
        logging.warning("%s: %s; clearing the stage and running it again", stage_dir, why)
        shutil.rmtree(stage_dir, ignore_errors=True)
        stage_dir.mkdir(parents=True, exist_ok=True)
        self.redone.append(str(stage_dir))

    def run(self, stage_dir: Path, name: str, inputs: dict[str, Any], body: Callable[[], StageOutputs]) -> StageOutputs:
        """Runs (or skips, or resumes) one stage; returns its outputs (module docstring)."""
        stage_dir = Path(stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        inputs = _plain(inputs)
        manifest_path, started_path = stage_dir / MANIFEST, stage_dir / STARTED
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            changed = diff_inputs(manifest["inputs"], inputs)
            if changed and not self.force:
                raise StageRefused(
                    f"{manifest_path}: stage {name} finished with other inputs ({'; '.join(changed)}); use a new "
                    "config.workdir, or --config.evolve.force=true to redo it and every stage after it"
                )
            bad = [] if changed else self._intact(stage_dir, manifest["outputs"]["files"])
            if not changed and not bad:
                logging.info("%s: finished earlier (%s), skipping", name, manifest["outputs"].get("counts", {}))
                self.timings[name] = float(manifest.get("seconds", 0.0))
                return manifest["outputs"]
            self._clear(stage_dir, f"inputs changed ({'; '.join(changed)})" if changed else f"files changed: {bad}")
        elif started_path.exists():
            started = json.loads(started_path.read_text(encoding="utf-8"))
            changed = diff_inputs(started["inputs"], inputs)
            if changed and not self.force:
                raise StageRefused(
                    f"{started_path}: an unfinished attempt of stage {name} used other inputs ({'; '.join(changed)});"
                    " use a new config.workdir, or --config.evolve.force=true to discard it"
                )
            if changed:
                self._clear(stage_dir, f"inputs changed ({'; '.join(changed)})")
        previous = json.loads(started_path.read_text(encoding="utf-8")) if started_path.exists() else None
        attempt = previous["attempt"] + 1 if previous else 1
        if previous:
            logging.info("%s: resuming an unfinished attempt (attempt %d)", name, attempt)
        write_json(started_path, {"inputs": inputs, "attempt": attempt, "started_at": time.time()})
        start = time.perf_counter()
        result = body()
        seconds = time.perf_counter() - start
        files = {}
        for path in result.get("files", []):
            path = Path(path)
            files[str(path.relative_to(stage_dir))] = {"sha256": file_sha256(path), "bytes": path.stat().st_size}
        outputs = {"files": files, "counts": result.get("counts", {}), "metrics": result.get("metrics", {})}
        write_json(
            manifest_path,
            {"stage": name, "inputs": inputs, "outputs": outputs, "attempts": attempt, "seconds": seconds},
        )
        self.timings[name] = seconds
        logging.info("%s: done in %.1f s (%s)", name, seconds, outputs["counts"])
        return outputs

"""Run folders: atomic writes, a manifest of everything that happened, and safe loading.

artifacts/runs/<name>/manifest.json records the config, package versions, data checksums,
seed, git commit, per-stage wall time and peak memory, and the sha256 of every file written.
Loading checks the sha256 first and uses torch.load(weights_only=True).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from .errors import HybridError

MANIFEST = "manifest.json"
PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "medmnist", "matplotlib", "tqdm",
            "joblib", "xgboost", "shap")


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            if name == "xgboost":
                with contextlib.suppress(PackageNotFoundError):
                    out[name] = version("xgboost-cpu")
    return out


def git_commit(cwd=None) -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd or Path(__file__).parent,
                           capture_output=True, text=True, timeout=10)
        commit = r.stdout.strip() if r.returncode == 0 else None
        if commit:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=cwd or Path(__file__).parent, capture_output=True, text=True, timeout=10)
            if dirty.stdout.strip():
                commit += "-dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB. On Linux VmHWM from /proc (ru_maxrss
    survives exec, so a process started by a big parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


class RunDir:
    """One run folder and its manifest. Every write goes through here so its sha256 is recorded."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest_path = self.path / MANIFEST
        if self.manifest_path.is_file():
            try:
                self.manifest = json.loads(self.manifest_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise HybridError(f"Manifest {self.manifest_path} is not valid JSON; the run folder is damaged.") from None
        else:
            self.manifest = {"created": _now(), "files": {}, "stages": {}}

    @classmethod
    def open(cls, path) -> "RunDir":
        """An existing run (error if it has no manifest)."""
        p = Path(path)
        if not (p / MANIFEST).is_file():
            raise HybridError(f"Run folder {p} has no {MANIFEST}; expected a folder made by `hybrid train`.")
        return cls(p)

    # --- writing -----------------------------------------------------------------------------
    def _record(self, rel: str) -> None:
        self.manifest["files"][rel] = sha256(self.path / rel)
        self.save_manifest()

    def save_manifest(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.manifest_path, json.dumps(self.manifest, indent=2, sort_keys=True, default=_jsonable).encode())

    def write_bytes(self, rel: str, data: bytes) -> Path:
        atomic_write_bytes(self.path / rel, data)
        self._record(rel)
        return self.path / rel

    def remove(self, rel: str) -> None:
        """Delete a file this run no longer produces (e.g. a figure with nothing to show), and its record."""
        (self.path / rel).unlink(missing_ok=True)
        if self.manifest["files"].pop(rel, None) is not None:
            self.save_manifest()

    def write_text(self, rel: str, text: str) -> Path:
        return self.write_bytes(rel, text.encode())

    def write_json(self, rel: str, obj) -> Path:
        return self.write_text(rel, json.dumps(obj, indent=2, default=_jsonable) + "\n")

    def save_torch(self, rel: str, obj) -> Path:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        return self.write_bytes(rel, buf.getvalue())

    # --- reading -----------------------------------------------------------------------------
    def verify(self, rel: str) -> Path:
        """The file's path, after checking it against the sha256 in the manifest."""
        p = self.path / rel
        want = self.manifest["files"].get(rel)
        if want is None:
            raise HybridError(f"{p} is not listed in {self.manifest_path}; refusing to load an unrecorded file.")
        if not p.is_file():
            raise HybridError(f"{p} is listed in the manifest but missing; rerun the stage that writes it.")
        if sha256(p) != want:
            raise HybridError(f"{p} does not match its sha256 in {self.manifest_path}; it was changed or damaged after the run.")
        return p

    def verify_all(self) -> list[str]:
        """Check every recorded file; returns the list checked, raises on the first mismatch."""
        for rel in sorted(self.manifest["files"]):
            self.verify(rel)
        return sorted(self.manifest["files"])

    def load_torch(self, rel: str):
        import torch

        p = self.verify(rel)
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is one message
            raise HybridError(f"{p} could not be loaded as weights-only torch data ({type(exc).__name__}).") from None

    def read_json(self, rel: str):
        return json.loads(self.verify(rel).read_text())

    # --- stages ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str):
        """Record wall time (s) and peak RSS (MiB) of a stage in the manifest.

        On entry the stage is marked started and its pipeline key dropped, so a stage killed
        part-way is never taken for up to date; temp files a killed writer left are removed.
        """
        t0 = time.perf_counter()
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        self.manifest.setdefault("stage_keys", {}).pop(name, None)
        self.manifest["stages"][name] = {"started": _now()}
        self.save_manifest()
        yield
        self.manifest["stages"][name] = {"wall_s": round(time.perf_counter() - t0, 2),
                                        "peak_rss_mb": round(peak_rss_mb(), 1), "finished": _now()}
        self.save_manifest()


class CheckpointStore:
    """Per-epoch training checkpoint in a run folder: atomic write, sha256 in the manifest, weights-only load."""

    def __init__(self, run: RunDir, rel: str = "checkpoints/last.pt"):
        self.run, self.rel = run, rel

    def load(self):
        if self.rel not in self.run.manifest["files"]:
            return None
        return self.run.load_torch(self.rel)

    def save(self, state) -> None:
        self.run.save_torch(self.rel, state)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

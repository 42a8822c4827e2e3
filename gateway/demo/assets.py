"""The browser clients of the demo page, from the npm packages ``scripts/setup.sh`` installs.

Fine Uploader ships a ready build; Uppy 5+ is ESM only, so its two packages are bundled into one
IIFE script by esbuild (also from npm) when the demo starts. Nothing here is ever committed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

FINE_UPLOADER_DIR = Path("fine-uploader") / "s3.fine-uploader"
UPPY_PACKAGES = ("@uppy/core", "@uppy/aws-s3")
ESBUILD = Path(".bin") / "esbuild"
INSTALL_HINT = "run scripts/setup.sh (npm ci) in the upload-gateway checkout"
BUILD_TIMEOUT = 60.0


@dataclass(frozen=True)
class Assets:
    """Where the page's scripts are; ``None`` (with the reason) when they are not installed."""

    fine_uploader: Path | None
    uppy_bundle: Path | None
    uppy_problem: str | None


def candidate_roots(cwd: Path) -> list[Path]:
    """Folders that may hold node_modules: the current one, then the package's checkout."""
    checkout = Path(__file__).resolve().parents[2]
    return list(dict.fromkeys([cwd.resolve(), checkout]))


def find_node_modules(roots: Iterable[Path]) -> Path | None:
    """The first ``<root>/node_modules`` holding Fine Uploader or Uppy."""
    for root in roots:
        folder = root / "node_modules"
        if (folder / FINE_UPLOADER_DIR).is_dir() or (folder / UPPY_PACKAGES[0]).is_dir():
            return folder
    return None


def build_uppy_bundle(node_modules: Path, out_dir: Path) -> tuple[Path | None, str | None]:
    """Bundle @uppy/core and @uppy/aws-s3 into ``out_dir/uppy.js``; (path, None) or (None, why)."""
    esbuild = node_modules / ESBUILD
    missing = [name for name in UPPY_PACKAGES if not (node_modules / name).is_dir()]
    if missing:
        return None, f"{', '.join(missing)} not installed: {INSTALL_HINT} to install Uppy"
    if not esbuild.is_file():
        return None, f"esbuild not installed: {INSTALL_HINT} to bundle Uppy"
    entry = (Path(__file__).resolve().parent / "static" / "uppy-entry.js").read_text()
    out = out_dir / "uppy.js"
    # The entry comes on stdin so that its imports resolve from the folder holding node_modules,
    # wherever the package itself is installed.
    try:
        subprocess.run(  # noqa: S603 - a fixed argv of the project's own esbuild
            [str(esbuild), "--bundle", "--format=iife", f"--outfile={out}", "--log-level=error"],
            input=entry,
            text=True,
            cwd=node_modules.parent,
            capture_output=True,
            timeout=BUILD_TIMEOUT,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        first = (exc.stderr or "").strip().splitlines()[:1]
        return None, f"esbuild failed to bundle Uppy: {first[0] if first else exc}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"esbuild failed to bundle Uppy: {exc}"
    return out, None


def locate(cwd: Path, out_dir: Path, *, want_uppy: bool) -> Assets:
    """Find Fine Uploader and, when the demo has an Uppy route, build the Uppy bundle."""
    node_modules = find_node_modules(candidate_roots(cwd))
    bundle: Path | None = None
    problem: str | None = None
    if node_modules is None:
        missing = f"Uppy is not installed: {INSTALL_HINT}"
        return Assets(None, None, missing if want_uppy else None)
    fine = node_modules / FINE_UPLOADER_DIR
    if want_uppy:
        bundle, problem = build_uppy_bundle(node_modules, out_dir)
    return Assets(fine if fine.is_dir() else None, bundle, problem)

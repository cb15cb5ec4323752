#!/usr/bin/env python3
"""Check the import contracts of pyproject.toml ([tool.importlinter]) with import-linter.

    .venv/bin/python scripts/lint_imports.py [lint-imports options, e.g. --verbose]

lianwatch's subpackages live in top-level folders (models/, streams/, sinks/,
dashboards/, replay/: ``[tool.setuptools] package-dir``), which import-linter
cannot follow from ``lianwatch/``. So the package is laid out once as it is
installed (the ``.py`` files, copied into a temporary directory) and
``lint-imports`` runs on that copy. Exit code: lint-imports'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: packages the contracts do not cover (the tests may reach into anything)
SKIP = {"lianwatch.tests"}


def source_dir(package: str, package_dir: dict[str, str]) -> Path:
    """Where ``package``'s files are in the repository, per setuptools' package-dir."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        base = ".".join(parts[:n])
        if base in package_dir:
            return ROOT / package_dir[base] / Path(*parts[n:])
    return ROOT / Path(*parts)


def lay_out(dest: Path) -> list[str]:
    """Copy every package's modules to ``dest`` as installed; the packages laid out."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    st = cfg["tool"]["setuptools"]
    done = []
    for pkg in st["packages"]:
        if pkg in SKIP:
            continue
        src = source_dir(pkg, st.get("package-dir", {}))
        out = dest / Path(*pkg.split("."))
        out.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, out / f.name)
        done.append(pkg)
    return done


def lint(layout: Path, argv: list[str] = (), **kw) -> subprocess.CompletedProcess:
    """``lint-imports`` with the repository's contracts on a laid-out copy."""
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe) if exe.exists() else "lint-imports", str(ROOT / "pyproject.toml"),
           "--no-cache", *argv]
    env = {**os.environ, "PYTHONPATH": str(layout)}  # the copy, ahead of the editable install
    return subprocess.run(cmd, cwd=layout, env=env, **kw)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="lianwatch-lint-") as tmp:
        lay_out(Path(tmp))
        return lint(Path(tmp), argv).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

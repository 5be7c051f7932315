"""`updraft pilot build`: the pilot as one self-contained file (a zipapp) a factory can stage.

The bundle holds the pilot package and the standard-library part of the common core
(``updraft.core.PILOT_BUNDLE``: errors, protocol, client, transport, the argument syntax,
the final record and the parameters).  Building twice from the same sources gives the same bytes (fixed timestamps), so
its sha256 identifies the pilot version.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from updraft.core import PILOT_BUNDLE

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = [
    "updraft/__init__.py",
    "updraft/core/__init__.py",
    *(f"updraft/core/{name}.py" for name in PILOT_BUNDLE),
]
MAIN = "import sys\nfrom pilot.loop import main\nsys.exit(main())\n"
EPOCH = (2020, 1, 1, 0, 0, 0)


def sources() -> list[Path]:
    pilot = sorted(
        p for p in (ROOT / "pilot").rglob("*.py") if "__pycache__" not in p.parts and p.name != "build.py"
    )
    return [*pilot, *(ROOT / name for name in BUNDLED)]


def build(output: Path) -> str:
    """Write the zipapp; returns its sha256."""
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sources():
            info = zipfile.ZipInfo(str(path.relative_to(ROOT)), EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
        info = zipfile.ZipInfo("__main__.py", EPOCH)
        info.external_attr = 0o644 << 16
        archive.writestr(info, MAIN)
    data = buffer.getvalue()
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(output.suffix + ".tmp")
    temporary.write_bytes(data)
    temporary.chmod(0o755)
    temporary.replace(output)
    return hashlib.sha256(data).hexdigest()


if (
    __name__ == "__main__"
):  # python -m pilot.build --list: the bundle's files (the lint checks them for Python 3.9)
    import sys

    if sys.argv[1:] == ["--list"]:
        print("\n".join(str(path.relative_to(ROOT)) for path in sources()))
    else:
        sys.exit("usage: python -m pilot.build --list   (to build the pilot: updraft pilot build)")

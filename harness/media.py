"""Real pictures for the detector tests, taken from Debian's packages (never from the network at
test time): OpenCV's pedestrian video `vtest.avi` (opencv-doc's examples) and the portrait
`grace_hopper.jpg` (matplotlib's sample data). `python -m harness.media` (run by scripts/setup.sh)
downloads the two .deb files once with `apt-get download`, keeps the two files under
.cache/media/ and drops the rest.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEDIA_DIR = ROOT / ".cache" / "media"
# file -> (Debian package, path inside it)
SOURCES = {
    "vtest.avi": ("opencv-doc", "./usr/share/doc/opencv-doc/examples/data/vtest.avi"),
    "grace_hopper.jpg": ("python-matplotlib-data", "./usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
}

log = logging.getLogger("harness.media")


def media_path(name: str) -> Path:
    """The cached file; raises FileNotFoundError naming the command that fetches it."""
    path = MEDIA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make setup` (python -m harness.media)")
    return path


def fetch(name: str) -> Path:
    package, member = SOURCES[name]
    target = MEDIA_DIR / name
    if target.is_file():
        return target
    MEDIA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)  # apt-get downloads as its _apt user when run as root
        subprocess.run(["apt-get", "download", "-qq", package], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        deb = next(Path(tmp).glob(f"{package}_*.deb"))
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, member], stdin=tar.stdout, check=True)
        if tar.wait() != 0:
            raise RuntimeError(f"dpkg-deb could not read {deb.name}")
        partial = target.with_suffix(target.suffix + ".part")
        shutil.move(Path(tmp) / member, partial)  # /tmp may be another filesystem
        partial.replace(target)
    log.info("%s from Debian's %s", target, package)
    return target


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="setup: %(message)s")
    try:
        for name in SOURCES:
            fetch(name)
    except (subprocess.CalledProcessError, OSError, RuntimeError, StopIteration) as err:
        print(f"setup: error: cannot fetch the test pictures from Debian's packages: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

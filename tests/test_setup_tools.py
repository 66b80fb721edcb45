"""Set-up on a machine without Java or Maven ends in one line naming what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness import kafka_jars

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_maven_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no java, no mvn
    with pytest.raises(kafka_jars.ToolMissing, match=r"java and mvn not found: install Java 17\+ and Maven"):
        kafka_jars.require_tools()


def test_fetching_jars_without_maven_exits_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    # A version never cached, so the fetch really needs Maven; PATH holds only python itself.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    result = subprocess.run([str(bin_dir / "python"), "-m", "harness.kafka_jars"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={"PATH": str(bin_dir), "KAFKA_VERSION": "0.0.0-never-cached"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found: install Java 17+ and Maven" in lines[0], result.stderr

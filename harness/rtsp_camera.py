"""Start and stop the fake RTSP camera (``rtsp_camera_server.py``) from the venv's Python.

Why a subprocess of ``/usr/bin/python3``: GStreamer's Python bindings (``gi``) exist only for
Debian's Python, not the project's. The server prints one ready line once it listens; ``start``
waits for it so a test never races the camera.

Use::

    cam = RtspCamera(width=1280, height=720, fps=30)   # live x264 test pattern (~21% CPU)
    cam = RtspCamera(mjpeg=True)                       # MJPEG camera: jpegenc quality 60 over RTP
    cam = RtspCamera(clip=make_clip(1280, 720, 30), fps=30)   # looped clip (~1% CPU)
    cam = RtspCamera(mjpeg_clip=make_mjpeg_clip(1280, 720, 30), fps=30)   # looped JPEGs, no encoder
    cam = RtspCamera(username="u", password="p")       # cam.url embeds the credentials
    cam = RtspCamera(hang=True)                        # accepts TCP, never answers
    cam.start(); cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG)
    cam.kill(); cam.start()                            # camera crash and recovery, same port
    cam.stop()
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self
from urllib.parse import quote

from harness import procs
from harness.ports import free_port

log = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().parent / "rtsp_camera_server.py"
READY_PREFIX = "rtsp camera ready at "


class RtspCamera:
    """A GStreamer RTSP server on 127.0.0.1 serving H.264 (or MJPEG) at ``/cam``, restartable on its port."""

    def __init__(
        self,
        port: int | None = None,
        width: int = 640,
        height: int = 360,
        fps: int = 15,
        clip: str | Path | None = None,
        mjpeg_clip: str | Path | None = None,
        username: str | None = None,
        password: str | None = None,
        hang: bool = False,
        mjpeg: bool = False,
        jpeg_quality: int = 60,
        path: str = "/cam",
        ready_timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.width, self.height, self.fps = width, height, fps
        self.clip = Path(clip).resolve() if clip else None
        self.mjpeg_clip = Path(mjpeg_clip).resolve() if mjpeg_clip else None
        self.username, self.password = username, password
        self.hang = hang
        self.mjpeg, self.jpeg_quality = mjpeg, jpeg_quality
        self.path = path if path.startswith("/") else "/" + path
        self.ready_timeout = ready_timeout
        self._log_dir = Path(tempfile.mkdtemp(prefix="rtsp-camera-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """RTSP URL, with ``user:password@`` embedded (percent-encoded) when auth is on."""
        creds = ""
        if self.username is not None:
            creds = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        return f"rtsp://{creds}127.0.0.1:{self.port}{self.path}"

    @property
    def url_without_credentials(self) -> str:
        """The same URL with no credentials, for tests that expect a 401."""
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    @property
    def log_path(self) -> Path:
        """The server's stderr (GStreamer warnings, tracebacks)."""
        return self._log_dir / "camera.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _argv(self) -> list[str]:
        argv = [
            SYSTEM_PYTHON,
            str(SERVER_SCRIPT),
            "--port",
            str(self.port),
            "--path",
            self.path,
            "--width",
            str(self.width),
            "--height",
            str(self.height),
            "--fps",
            str(self.fps),
        ]
        if self.clip:
            argv += ["--clip", str(self.clip)]
        if self.mjpeg_clip:
            argv += ["--mjpeg-clip", str(self.mjpeg_clip)]
        if self.mjpeg:
            argv += ["--mjpeg", "--jpeg-quality", str(self.jpeg_quality)]
        if self.username is not None:
            argv += ["--username", self.username, "--password", self.password or ""]
        if self.hang:
            argv.append("--hang")
        return argv

    def start(self) -> None:
        """Launch the server and return once it listens; RuntimeError with its log otherwise."""
        if self.is_running():
            return
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        with open(self.log_path, "ab") as err:
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        procs.track(self._proc)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        finally:
            if self._proc.stdout:
                self._proc.stdout.close()  # one line is all the server ever prints
        log.info("camera %s up (pid %d)", self.url_without_credentials, self._proc.pid)

    def _wait_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        fd = self._proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(self._failure(f"not ready within {self.ready_timeout}s"))
            readable, _, _ = select.select([fd], [], [], min(left, 0.5))
            if readable:  # so this read returns at once (data or EOF), never blocks
                chunk = os.read(fd, 4096)
                if not chunk:
                    self._proc.wait(timeout=5)
                    raise RuntimeError(self._failure(f"exited with {self._proc.returncode}"))
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode(errors="replace")
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(self._failure(f"printed {line!r} instead of the ready line"))

    def _failure(self, what: str) -> str:
        return f"RTSP camera on port {self.port} {what}.\n{procs.log_tail(self.log_path)}"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s. ``start()`` may follow, same port."""
        procs.terminate(self._proc, timeout)

    def kill(self) -> None:
        """SIGKILL at once, like a camera losing power."""
        procs.kill(self._proc)

    def close(self) -> None:
        """Stop and remove the log directory."""
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

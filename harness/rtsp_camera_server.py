"""A fake IP camera: GStreamer's RTSP server serving H.264 on rtsp://127.0.0.1:PORT/cam.

Run by Debian's ``/usr/bin/python3`` because only that Python has ``gi`` (GStreamer's
introspection bindings); ``harness.rtsp_camera.RtspCamera`` starts it from the venv. Standalone
on purpose: it must not import the harness package or anything from the venv.

Modes:
  live (default)  videotestsrc ball + time overlay, encoded by x264 live, so every frame differs.
  --mjpeg        the same moving pattern as JPEG over RTP (jpegenc ! rtpjpegpay, RFC 2435), like an
                  MJPEG IP camera; ``--jpeg-quality`` sets the camera's own encoder quality.
  --clip FILE     a pre-encoded H.264 elementary stream (``harness.clips.make_clip``) looped and
                  re-packetized without re-encoding: near-free camera for benchmarks.
  --mjpeg-clip DIR  a directory of numbered JPEG frames (``harness.clips.make_mjpeg_clip``) looped
                  and sent as RTP/JPEG without encoding: a near-free MJPEG camera for benchmarks.
  --hang          a plain TCP server that accepts connections and never answers (hung camera).
  --username/--password  require RTSP basic auth, so tests can check credentials in URLs.

Prints exactly one line ``rtsp camera ready at rtsp://127.0.0.1:PORT/cam`` once listening, then
runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading

log = logging.getLogger("rtsp_camera_server")


def live_launch(width: int, height: int, fps: int) -> str:
    """Encode a moving test pattern live; key frame every second so late joiners start fast."""
    return (
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f'! timeoverlay font-desc="Sans 48" '
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def mjpeg_launch(width: int, height: int, fps: int, quality: int) -> str:
    """Encode the moving pattern as JPEG, one picture per frame, sent as RTP/JPEG (payload 26).

    RTP/JPEG carries 4:2:0 or 4:2:2 only (rtpjpegpay rejects 4:4:4 "Invalid component"): force I420.
    """
    return (
        f"( videotestsrc is-live=true pattern=ball "
        f"! video/x-raw,width={width},height={height},framerate={fps}/1 "
        f'! timeoverlay font-desc="Sans 48" '
        f"! videoconvert ! video/x-raw,format=I420 ! jpegenc quality={quality} "
        f"! rtpjpegpay name=pay0 pt=26 )"
    )


def clip_launch(path: str, fps: int) -> str:
    """Loop an .h264 elementary stream; h264parse stamps frames at ``fps``, identity paces them.

    multifilesrc re-reads the file forever without new segments, so h264parse's interpolated
    timestamps keep growing across loops; ``identity sync=true`` releases each frame on time
    (the source is not live, so nothing else would hold it back). h264parse only sets DTS on a
    timestamp-less stream; ``copy_dts_to_pts`` fills PTS, else every RTP timestamp is 0 and
    FFmpeg clients probe for 5 s before opening.
    """
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'( multifilesrc location="{quoted}" loop=true '
        f'caps="video/x-h264,stream-format=byte-stream,framerate={fps}/1" '
        f"! h264parse name=parse ! identity sync=true "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def mjpeg_clip_launch(directory: str, fps: int) -> str:
    """Loop a directory of ``%05d.jpg`` frames as RTP/JPEG, ``fps`` pictures a second.

    multifilesrc carries no timestamps and jpegparse stamps only the first picture (unlike
    h264parse it does not interpolate), so ``stamp_frames`` numbers them at ``fps``;
    ``identity sync=true`` paces the non-live source. The JPEGs must be baseline 4:2:0 or 4:2:2
    with sizes in multiples of 8 (what rtpjpegpay can carry).
    """
    pattern = f"{directory.rstrip('/')}/%05d.jpg".replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'( multifilesrc location="{pattern}" loop=true '
        f'caps="image/jpeg,framerate={fps}/1" '
        f"! jpegparse name=parse ! identity sync=true "
        f"! rtpjpegpay name=pay0 pt=26 )"
    )


def copy_dts_to_pts(media: object) -> None:
    """On each new clip pipeline, make the parser's output carry PTS = DTS (no B-frames)."""
    from gi.repository import Gst

    def probe(_pad: object, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is not None and buf.pts == Gst.CLOCK_TIME_NONE:
            buf.pts = buf.dts
        return Gst.PadProbeReturn.OK

    parse = media.get_element().get_by_name("parse")  # type: ignore[attr-defined]
    parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)


def stamp_frames(media: object, fps: int) -> None:
    """On each new MJPEG clip pipeline, give picture k of the parser's output PTS = DTS = k / fps."""
    from gi.repository import Gst

    step = Gst.SECOND // fps
    count = [0]

    def probe(_pad: object, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        if buf is not None:
            buf.pts = buf.dts = count[0] * step
            buf.duration = step
            count[0] += 1
        return Gst.PadProbeReturn.OK

    parse = media.get_element().get_by_name("parse")  # type: ignore[attr-defined]
    parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)


def ready(port: int, path: str) -> None:
    print(f"rtsp camera ready at rtsp://127.0.0.1:{port}{path}", flush=True)


def serve_hang(port: int, path: str, stop: threading.Event) -> int:
    """Accept TCP connections and never reply, like a camera whose firmware hung."""
    held: list[socket.socket] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", port))
        srv.listen(64)
        srv.settimeout(0.2)
        ready(port, path)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except TimeoutError:
                continue
    for conn in held:
        conn.close()
    return 0


def serve_rtsp(args: argparse.Namespace) -> int:
    """Serve the live pattern or the clip with GstRtspServer until a signal arrives."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    if args.clip:
        factory.set_launch(clip_launch(args.clip, args.fps))
        factory.connect("media-configure", lambda _f, media: copy_dts_to_pts(media))
    elif args.mjpeg_clip:
        factory.set_launch(mjpeg_clip_launch(args.mjpeg_clip, args.fps))
        factory.connect("media-configure", lambda _f, media: stamp_frames(media, args.fps))
    elif args.mjpeg:
        factory.set_launch(mjpeg_launch(args.width, args.height, args.fps, args.jpeg_quality))
    else:
        factory.set_launch(live_launch(args.width, args.height, args.fps))
    factory.set_shared(True)  # one encoder for all viewers, like a real camera
    if args.username is not None:
        role = "viewer"
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", role)
        basic = GstRtspServer.RTSPAuth.make_basic(args.username, args.password or "")
        auth.add_basic(basic, token)
        server.set_auth(auth)
        perms, _ = Gst.Structure.from_string(
            f"{role}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
        factory.add_role_from_structure(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        log.error("cannot listen on 127.0.0.1:%d", args.port)
        return 1
    ready(args.port, args.path)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake RTSP camera (GStreamer)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/cam")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--clip", help=".h264 elementary stream to loop (fps must match)")
    parser.add_argument("--mjpeg-clip", metavar="DIR",
                        help="directory of %%05d.jpg frames to loop as RTP/JPEG without encoding (fps must match)")
    parser.add_argument("--mjpeg", action="store_true", help="serve JPEG over RTP instead of H.264")
    parser.add_argument("--jpeg-quality", type=int, default=60, help="the MJPEG camera's encoder quality")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if not args.path.startswith("/"):
        args.path = "/" + args.path
    if args.hang:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        return serve_hang(args.port, args.path, stop)
    return serve_rtsp(args)


if __name__ == "__main__":
    sys.exit(main())

"""``moee-studio [PROJECT] [--model DIR] [--renderer portrait|pixel] [--device DEV] [--portrait IMG] [--audio WAV]
[--screenshot OUT.png]``.

``--renderer portrait`` (default) renders the portrait at its own resolution (long side capped at 1024);
``--renderer pixel`` uses the pixel model's small face crop (``--frame portrait|crop``, the old name, still works).
``--device`` reaches the pixel renderer only: given with the portrait renderer (which runs on the CPU) anything but
``cpu`` or ``auto`` is refused (exit code 2), as ``moee render`` refuses it. ``--screenshot`` renders the window
offscreen once the first preview frame is shown, saves it as a PNG and exits (set ``QT_QPA_PLATFORM=offscreen``
on a machine without a display).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

#: The renderer that reads ``--device``, and the pseudo model folder that is always that renderer.
PIXEL_RENDERER = "pixel"
TINY_MODEL = "tiny"
#: ``--device`` values that every renderer honours (the portrait renderer runs on the CPU).
CPU_DEVICES = frozenset({"cpu", "auto"})
DEFAULT_DEVICE = "cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="moee-studio", description="MoEE Studio: mix emotions on a talking portrait")
    parser.add_argument("project", nargs="?",
                        help="a .moee project file to open, or a portrait image (as --portrait IMG)")
    parser.add_argument("--model", default=None,
                        help="model folder (default: the bundled demo model; 'tiny' = untrained tiny model)")
    from studio.engine_api import add_renderer_arguments

    add_renderer_arguments(parser)
    parser.add_argument("--portrait", default=None, help="portrait image to start with")
    parser.add_argument("--audio", default=None, help="speech audio to start with")
    parser.add_argument("--device", default=None,
                        help="torch device of --renderer pixel (and --model tiny): cpu, cuda, cuda:N, mps, auto "
                             "(default cpu); the portrait renderer runs on the CPU")
    parser.add_argument("--screenshot", metavar="OUT.png", default=None,
                        help="save a screenshot after the first preview frame, then exit")
    parser.add_argument("--mix", default=None, help="initial mix for screenshots, e.g. 'happiness=0.6,surprise=0.4'")
    parser.add_argument("--demo", action="store_true",
                        help="showcase state for screenshots: three keyframes and a painted mouth mask")
    parser.add_argument("--timeout", type=float, default=180.0, help="screenshot mode: give up after this many seconds")
    args = parser.parse_args(argv)
    from studio.project_io import SUFFIX

    if args.project and Path(args.project).suffix.lower() != SUFFIX and args.portrait is None:
        args.portrait, args.project = args.project, None  # `moee-studio PHOTO.jpg` opens the photo as the portrait
    pixel = args.renderer == PIXEL_RENDERER or args.model == TINY_MODEL
    if args.device is not None and args.device not in CPU_DEVICES and not pixel:
        # as `moee render`: a flag the chosen renderer cannot honour is refused by name, never ignored
        parser.error(f"--device {args.device} needs --renderer pixel (the portrait renderer runs on the CPU)")
    if args.device is None:
        args.device = DEFAULT_DEVICE
    return args


def _demo_inputs(renderer: str = "portrait") -> tuple[str | None, str | None]:
    """The bundled demo portrait and speech: the 256 px photo for the portrait path (the 128 px
    portrait's face is too small to animate at its own resolution), the 128 px portrait for the crop."""
    from studio.engine_api import demo_inputs

    portrait, audio, photo = demo_inputs()
    if renderer == "portrait" and photo.exists():
        portrait = photo
    return (str(portrait) if portrait.exists() else None, str(audio) if audio.exists() else None)


def _setup_demo(window: object) -> None:
    """Keyframes calm -> happily surprised -> angry, and a happiness mask on the mouth (after prepare)."""
    from studio.keyframes import Keyframe

    def build(prepared: object) -> None:
        window.preparedReady.disconnect(build)
        n = int(getattr(prepared, "num_frames", 50))
        doc = window.doc
        e = len(doc.emotions)
        for frame, mix in ((0, {"sadness": 0.3}), (n * 2 // 5, {"happiness": 0.6, "surprise": 0.4}),
                           (n * 4 // 5, {"anger": 0.8, "disgust": 0.3})):
            weights = [mix.get(name, 0.0) for name in doc.emotions][:e]
            doc.add_keyframe(Keyframe(frame, weights))
        window.set_playhead(n * 2 // 5)
        window.brush_panel.emotion.setCurrentIndex(0)
        if window.canvas.landmarks is not None:
            window.fill_region("mouth")
        window.brush_panel.heat.setCurrentIndex(6)  # model gate s of "surprise"

    window.preparedReady.connect(build)


#: Exit code of a scripted run given an input it cannot use (as ``moee`` uses).
EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    """Start the studio (returns the process exit code)."""
    args = parse_args(argv)
    if args.screenshot and not os.environ.get("QT_QPA_PLATFORM") and not os.environ.get("DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from studio import settings
    from studio.main_window import MainWindow
    from studio.qtutil import apply_dark_theme

    if args.screenshot and args.project:
        # A scripted run has nobody to read a message box: a project that cannot be opened is an error (exit 2).
        from studio.engine_api import MoEEError
        from studio.project_io import load_project

        try:
            load_project(args.project)
        except MoEEError as exc:
            print(f"error: cannot open {args.project}: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
    app = QApplication.instance() or QApplication(sys.argv[:1])
    # torch is imported on the engine thread while the model loads (engine_api.configure_threads): the
    # window and the portrait show first
    app.setOrganizationName(settings.ORGANISATION)
    app.setApplicationName(settings.APPLICATION)
    apply_dark_theme(app)
    if args.screenshot:
        # never touch the user's settings or recovery file from a scripted screenshot
        import tempfile

        settings.use_settings_file(Path(tempfile.mkdtemp(prefix="moee-shot-")) / "settings.ini")
    window = MainWindow(model_dir=args.model, show_dialogs=not args.screenshot, device=args.device,
                        renderer=args.renderer)
    if args.screenshot:
        window.resize(1600, 980)
    window.show()

    if args.project:
        window.open_project(args.project)
    elif not args.screenshot:
        window.offer_recovery()
    portrait, audio = args.portrait, args.audio
    if args.screenshot and not args.project and portrait is None:
        portrait, audio = _demo_inputs(args.renderer)
    if audio:
        window.open_audio(audio)
    if portrait:
        window.open_portrait(portrait)
    if args.mix:
        from studio.engine_api import parse_mix

        window.palette.apply_mix(parse_mix(args.mix, window.doc.emotions), "Initial mix")

    if args.demo:
        _setup_demo(window)

    if args.screenshot:
        out = Path(args.screenshot)
        state = {"code": 1}
        loop = QEventLoop()  # a local loop: app.quit() would also stop a host application's loops

        def shoot(result: object) -> None:
            if (getattr(result, "quality", "") != "refine" and window.doc.render.refine_steps > 0
                    and not window.preview_is_final):
                return  # wait for the full-quality frame so the shot shows the real preview
            app.processEvents()
            out.parent.mkdir(parents=True, exist_ok=True)
            ok = window.grab().save(str(out), "PNG")
            print(f"screenshot saved to {out}" if ok else f"could not save {out}")
            state["code"] = 0 if ok else 1
            window.close()
            loop.quit()

        def give_up() -> None:
            print(f"no preview frame after {args.timeout:.0f} s; last error: {window.last_error or 'none'}")
            window.grab().save(str(out), "PNG")
            window.close()
            loop.quit()

        window.previewSettled.connect(shoot)
        window.errorReported.connect(lambda m: print(f"error: {m}", file=sys.stderr))
        watchdog = QTimer()
        watchdog.setSingleShot(True)
        watchdog.timeout.connect(give_up)
        watchdog.start(int(args.timeout * 1000))
        loop.exec()
        watchdog.stop()
        window.deleteLater()
        return state["code"]
    code = app.exec()
    # The window saved settings and removed its recovery file on close (closeEvent -> shutdown). Leave
    # now: a normal interpreter shutdown waits for the native thread pools of MediaPipe and torch, which
    # kept the process alive for 6-10 s after the window had closed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())

"""``moee``: the command line (render, bench, synth, train, eval)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from engine.errors import MoEEError


def yes_no(value: str | None) -> bool | None:
    """A ``yes|no`` option's value as a bool; None (not given: the model's setting) stays None."""
    return None if value is None else value == "yes"


def recorded_command(subcommand: str, argv: Sequence[str] | None = None) -> str:
    """The command line that ran, as ``moee SUBCOMMAND ARGS`` (for a model's or a file's notes).

    The same whether it ran as ``moee SUBCOMMAND ...`` or ``python -m training.MODULE ...``, and without
    the local path of the script; arguments are shell-quoted, so the record can be pasted and run.
    """
    args = list(sys.argv if argv is None else argv)[1:]
    if args[:1] == [subcommand]:
        args = args[1:]
    return shlex.join(["moee", subcommand, *args])


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="animate a portrait with an audio track and an emotion mix")
    p.add_argument("portrait", help="portrait image (png, jpg, ...)")
    p.add_argument("audio", help="speech audio (wav, mp3, flac, m4a, ...)")
    p.add_argument("-o", "--output", required=True, help="output .mp4 or .gif (written atomically)")
    p.add_argument("--emotion", default=None,
                   help="slider weights, e.g. 'happiness=0.6,surprise=0.4', or a preset like 'sadly angry'")
    p.add_argument("--text", default=None, help="describe the emotion, e.g. 'sadly surprised'")
    p.add_argument("--emotion-audio", default=None, help="a clip whose tone of voice conditions the emotion")
    p.add_argument("--mask", action="append", default=[], help="painted local gate mask (grey PNG, white = on)")
    p.add_argument("--mask-emotion", action="append", default=[], help="the emotion each --mask paints")
    p.add_argument("--mask-alpha", type=float, default=1.0, help="how much masks override the model's local gate")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", default="dpm", choices=["dpm", "ddim", "euler"])
    p.add_argument("--guidance", type=float, default=None, help="emotion guidance scale (1 = off; default: the model's)")
    p.add_argument("--strength", type=float, default=None,
                   help="start from the portrait noised to this level, 0..1 (1 = pure noise; default: the model's)")
    p.add_argument("--lip-guidance", type=float, default=None,
                   help="lip guidance against silence at the less noisy steps (1 = off, faster; default: the model's)")
    p.add_argument("--keep-background", choices=("yes", "no"), default=None,
                   help="show the portrait's own background outside the person (default: the model's)")
    p.add_argument("--calibration", default=None, metavar="off|FILE",
                   help="slider calibration: 'off' (each slider is the gate) or a curves JSON from "
                        "moee calibrate (default: the model's)")
    p.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--expert", action="append", default=[], help="expert pack to load (adds an emotion)")
    p.add_argument("--fps", type=int, default=None, help="frames per second (default: the model's, 25)")
    p.add_argument("--frames-dir", default=None, help="also write a PNG sequence to this folder")
    p.add_argument("--crop", default="auto", choices=["auto", "face", "none"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.set_defaults(func=run_render)


def _gate_control(args: argparse.Namespace, animator, prepared):
    """Sliders from --emotion / --text, masks from --mask; validated against the model's emotions."""
    import numpy as np

    from engine.emotions import mix_to_vector, parse_mix
    from engine.errors import EmotionSpecError
    from engine.image import load_image, resize
    from engine.moee import GateControl

    emotions = animator.emotions
    if args.emotion:
        mix = parse_mix(args.emotion, emotions)
    elif args.text:
        mix = animator.emotion_from_text(args.text)
        print(f"'{args.text}' -> " + (", ".join(f"{k}={v:.2f}" for k, v in mix.items()) or "neutral"))
    else:
        mix = {}
    weights = mix_to_vector(mix, emotions)
    masks = alpha = None
    if args.mask:
        if len(args.mask) != len(args.mask_emotion):
            raise EmotionSpecError("give one --mask-emotion for every --mask")
        size = prepared.portrait.shape[0]
        masks = np.zeros((len(emotions), size, size), np.float32)
        alpha = np.zeros(len(emotions), np.float32)
        for path, name in zip(args.mask, args.mask_emotion, strict=True):
            index = emotions.index(parse_mix(name, emotions).popitem()[0])
            grey = resize(load_image(path), size).astype(np.float32).mean(axis=2) / 255.0
            masks[index] = np.maximum(masks[index], grey)
            alpha[index] = args.mask_alpha
    return GateControl(weights, masks, alpha)


def run_render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from engine.config import override_sampling
    from engine.export import export_clip
    from engine.pipeline import Animator

    animator = Animator.from_pretrained(args.model, device=args.device)
    overrides = (("audio_guidance_scale", "--lip-guidance", args.lip_guidance),
                 ("keep_background", "--keep-background", yes_no(args.keep_background)))
    animator.cfg.sampling = override_sampling(animator.cfg.sampling, overrides, args.calibration)
    if not animator.trained:
        print("warning: this model's weights are untrained; the video shows noise-like images", file=sys.stderr)
    for pack in args.expert:
        print(f"loaded custom emotion {animator.load_expert_pack(pack)!r}")
    prepared = animator.prepare(args.portrait, args.audio, crop=args.crop, emotion_text=args.text,
                                emotion_audio=args.emotion_audio, fps=args.fps)
    for warning in prepared.warnings:
        print(f"note: {warning}", file=sys.stderr)
    gates = _gate_control(args, animator, prepared)
    bar = tqdm(total=prepared.num_frames, unit="frame", desc="rendering")

    def on_frame(_index: int, _progress: float) -> None:
        bar.update(1)

    common = dict(gates=gates, steps=args.steps, seed=args.seed, sampler=args.sampler, guidance_scale=args.guidance,
                  strength=args.strength)
    try:
        export_clip(animator, prepared, args.output, on_frame=on_frame, frames_dir=args.frames_dir, **common)
    finally:
        bar.close()
    print(f"wrote {args.output} ({prepared.num_frames} frames at {prepared.fps} fps)")
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure preview latency, clip speed and memory (JSON)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    p.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    p.add_argument("--config", default=None, help="benchmark an untrained config instead (tiny, demo, sd15)")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=8, help="denoising steps of the preview")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--frames", type=int, default=8, help="clip length of the base clip measurement")
    p.add_argument("--crop", default="auto", choices=["auto", "face", "none"],
                   help="portrait crop (none: no face detection, the portrait as it is)")
    p.add_argument("--keep-background", choices=("yes", "no"), default=None,
                   help="keep the portrait's background outside the person (default: the model's)")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    import json

    from engine.bench import run_benchmarks

    result = run_benchmarks(model_dir=args.model, config=args.config, device=args.device, steps=args.steps,
                            repeats=args.repeats, frames=args.frames, crop=args.crop,
                            keep_background=yes_no(args.keep_background))
    text = json.dumps(result, indent=2)
    print(text)
    return 0


def _add_init(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a new (untrained) model folder, optionally from local SD weights")
    p.add_argument("output", help="model folder to create")
    p.add_argument("--config", default="demo", choices=["tiny", "demo", "sd15"])
    p.add_argument("--base-model", default=None,
                   help="a local diffusers Stable Diffusion folder (unet/, vae/) to initialise the U-Net, "
                        "ReferenceNet and VAE from; the MoEE modules start as identity")
    p.add_argument("--fp16", action="store_true", help="store the weights in half precision")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    import torch

    from engine.checkpoint import save_model
    from engine.config import get_config
    from engine.model import MoEEModel

    torch.manual_seed(args.seed)
    cfg = get_config(args.config)
    model = MoEEModel.from_base_model(cfg, args.base_model) if args.base_model else MoEEModel(cfg)
    notes = {"trained": False, "base_model": str(args.base_model or ""), "seed": args.seed}
    save_model(model, args.output, dtype=torch.float16 if args.fp16 else torch.float32, notes=notes)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {args.config} config, {params / 1e6:.1f} M parameters"
          + (f", initialised from {args.base_model}" if args.base_model else ", random weights"))
    return 0


def _add_delegated(sub: argparse._SubParsersAction) -> None:
    """synth / train / eval / calibrate live in training/ and are imported only when used."""
    for name, module, adder, runner, text in (
        ("synth", "training.synthetic", "add_synth_arguments", "run_synth", "render a synthetic talking-face data set"),
        ("train", "training.trainer", "add_train_arguments", "run_train", "train a stage or a custom expert"),
        ("eval", "training.evaluate", "add_eval_arguments", "run_eval", "evaluate a model on held-out identities"),
        ("calibrate", "training.calibrate", "add_calibrate_arguments", "run_calibrate",
         "fit a model's slider calibration on training people"),
    ):
        p = sub.add_parser(name, help=text)
        try:
            mod = __import__(module, fromlist=[adder])
        except ImportError as exc:
            p.set_defaults(func=lambda _a, exc=exc, name=name: _unavailable(name, exc))
            continue
        getattr(mod, adder)(p)
        p.set_defaults(func=getattr(mod, runner))


def _unavailable(name: str, exc: Exception) -> int:
    print(f"moee {name} is not available: {exc}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moee", description="MoEE Studio command line")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_render(sub)
    _add_bench(sub)
    _add_init(sub)
    _add_delegated(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MoEEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

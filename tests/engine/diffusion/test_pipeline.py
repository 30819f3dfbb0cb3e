"""The Animator API the studio and the CLI use: prepare once, render frames and clips."""

from pathlib import Path

import numpy as np
import pytest
import torch

from engine.animator import CancelToken
from engine.diffusion.config import SamplingConfig
from engine.diffusion.pipeline import (
    Animator,
    audio_guidance_active,
    combine_guidance,
    emotion_guidance,
    guidance_active,
    guidance_passes,
    guidance_scale_map,
    guidance_term,
    initial_latents,
    latent_mouth_mask,
    make_scheduler,
    run_unet_passes,
    sampling_timesteps,
)
from engine.errors import CancelledError, EmotionSpecError, InputAudioError, InputImageError, NoFaceError
from engine.io.audio import MEL_SILENCE, silent_windows
from engine.io.face import mouth_mask
from engine.moee import BatchGates, GateControl
from tests.engine_helpers import tiny_model

ASSETS = Path(__file__).resolve().parents[3] / "assets" / "demo"
PORTRAIT, SPEECH, PHOTO = ASSETS / "portrait.png", ASSETS / "speech.wav", ASSETS / "photo.png"


@pytest.fixture(scope="module")
def animator() -> Animator:
    return Animator(tiny_model(), device="cpu")


@pytest.fixture(scope="module")
def prepared(animator):
    return animator.prepare(PORTRAIT, SPEECH)


def test_prepare_caches_what_sliders_do_not_change(animator, prepared):
    assert prepared.portrait.shape == (32, 32, 3)
    assert prepared.num_frames == round(prepared.audio.duration * 25)
    assert prepared.reference is not None and prepared.audio_tokens.shape[0] == prepared.num_frames
    assert prepared.landmarks is not None and prepared.landmarks.shape[1] == 2


def test_render_is_deterministic_per_seed(animator, prepared):
    gates = GateControl([0.6, 0, 0, 0, 0, 0.4])
    a = animator.render_frame(prepared, 5, gates, steps=3, seed=1)
    b = animator.render_frame(prepared, 5, gates, steps=3, seed=1)
    c = animator.render_frame(prepared, 5, gates, steps=3, seed=2)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_a_slider_change_changes_the_rendered_frame(animator, prepared):
    neutral = animator.render_frame(prepared, 0, GateControl([0.0] * 6), steps=3)
    angry = animator.render_frame(prepared, 0, GateControl([0, 0, 1.0, 0, 0, 0]), steps=3)
    assert np.abs(neutral.astype(int) - angry.astype(int)).mean() > 0.05


def test_painted_mask_reaches_the_right_tokens(animator, prepared):
    masks = np.zeros((6, 32, 32), np.float32)
    masks[3, :16] = 1.0  # disgust on the top half
    alpha = np.zeros(6, np.float32)
    alpha[3] = 1.0
    animator.render_frame(prepared, 0, GateControl([0, 0, 0, 1.0, 0, 0], masks, alpha), steps=2)
    maps = animator.last_gate_maps()
    assert maps.shape == (6, 32, 32)
    assert maps[3, :12].min() > 0.95 and maps[3, 20:].max() < 0.05


def test_clip_frames_come_in_order_across_windows(animator, prepared):
    results = list(animator.render_clip(prepared, GateControl([0.5, 0, 0, 0, 0, 0.5]), steps=2, start=3, stop=14,
                                        window=4, overlap=1))
    assert [r.index for r in results] == list(range(3, 14))
    assert results[-1].progress == pytest.approx(1.0)
    progress = [r.progress for r in results]
    assert progress == sorted(progress) and progress[0] > 0
    for r in results:
        assert r.image.shape == (32, 32, 3) and r.image.dtype == np.uint8 and r.image.std() > 5, r.index
    # the frames are the clip's own (the audio differs per frame), not one frame repeated
    assert len({r.image.tobytes() for r in results}) == len(results)


def test_timeline_callable_gives_each_frame_its_own_gates(animator, prepared):
    seen = []

    def gates_at(frame: int) -> GateControl:
        seen.append(frame)
        return GateControl([frame / 10, 0, 0, 0, 0, 0])

    list(animator.render_clip(prepared, gates_at, steps=1, stop=6, window=3, overlap=1))
    assert set(seen) == set(range(6))


def test_cancel_stops_a_render(animator, prepared):
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        animator.render_frame(prepared, 0, GateControl([1.0, 0, 0, 0, 0, 0]), steps=5, cancel=token)


def test_bad_requests_get_clear_errors(animator, prepared):
    with pytest.raises(EmotionSpecError, match="outside the clip"):
        animator.render_frame(prepared, prepared.num_frames, None, steps=1)
    with pytest.raises(EmotionSpecError, match="unknown sampler"):
        animator.render_frame(prepared, 0, None, steps=1, sampler="nope")
    with pytest.raises(EmotionSpecError, match="outside 0..1"):
        animator.render_frame(prepared, 0, GateControl([2.0, 0, 0, 0, 0, 0]), steps=1)


def test_every_sampler_runs_and_is_the_one_that_samples(animator, prepared):
    """Each sampler gives a real (not blank), repeatable frame, and a different one: a sampler name that is
    ignored (every name the same solver) fails."""
    frames = {}
    for sampler in ("ddim", "dpm", "euler"):
        frame = animator.render_frame(prepared, 0, None, steps=2, sampler=sampler, seed=3)
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
        assert frame.std() > 5, f"{sampler} rendered a blank frame"
        assert np.array_equal(frame, animator.render_frame(prepared, 0, None, steps=2, sampler=sampler, seed=3))
        frames[sampler] = frame
    assert not np.array_equal(frames["ddim"], frames["dpm"]) and not np.array_equal(frames["dpm"], frames["euler"])
    assert not np.array_equal(frames["ddim"], frames["euler"])


def test_strength_starts_from_the_noised_portrait_and_runs_that_fraction_of_the_steps(animator, prepared):
    calls = []
    hook = animator.model.denoiser.register_forward_hook(lambda *_: calls.append(1))
    try:
        for sampler in ("ddim", "dpm", "euler"):
            for strength, expected in ((1.0, 8), (0.5, 4), (0.01, 1)):
                calls.clear()
                image = animator.render_frame(prepared, 0, None, steps=8, sampler=sampler, strength=strength)
                assert len(calls) == expected and image.shape == (32, 32, 3)
    finally:
        hook.remove()
    # below 1 the start is the portrait noised to the first timestep (SDEdit); at 1 it is pure noise
    scheduler = make_scheduler("ddim", animator.cfg)
    noise = torch.randn(2, *prepared.reference_latent.shape[1:], generator=torch.Generator().manual_seed(0))
    portrait = torch.randn(prepared.reference_latent.shape, generator=torch.Generator().manual_seed(1))
    first = sampling_timesteps(scheduler, 8, 0.5)[0]
    abar = scheduler.alphas_cumprod[int(first)]
    start = initial_latents(scheduler, noise, portrait, first, 0.5)
    torch.testing.assert_close(start, abar.sqrt() * portrait + (1 - abar).sqrt() * noise)
    torch.testing.assert_close(initial_latents(scheduler, noise, portrait, first, 1.0), noise)
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(EmotionSpecError, match="strength"):
            animator.render_frame(prepared, 0, None, steps=2, strength=bad)


def test_emotion_guidance_defaults_to_the_models_setting(animator, prepared):
    calls = []  # U-Net passes: the batch size of each call
    hook = animator.model.denoiser.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    default = animator.cfg.sampling.guidance_scale
    gates = GateControl([0.8, 0, 0, 0, 0, 0])
    try:
        plain = animator.render_frame(prepared, 0, gates, steps=4, strength=1.0, guidance_scale=1.0)
        animator.cfg.sampling.guidance_scale = 3.0
        calls.clear()
        guided = animator.render_frame(prepared, 0, gates, steps=4, strength=1.0)
        assert sum(calls) == 8 and len(calls) == 4  # a neutral pass beside every guided one, in one call
        assert np.array_equal(guided, animator.render_frame(prepared, 0, gates, steps=4, strength=1.0,
                                                             guidance_scale=3.0))
        assert not np.array_equal(guided, plain)
    finally:
        animator.cfg.sampling.guidance_scale = default
        hook.remove()


def test_guidance_in_a_limited_interval_skips_the_late_steps(animator, prepared):
    assert guidance_active(800, 1000, 0.5) and guidance_active(500, 1000, 0.5) and not guidance_active(499, 1000, 0.5)
    assert guidance_active(0, 1000, 0.0)
    sampling = animator.cfg.sampling
    calls = []
    hook = animator.model.denoiser.register_forward_hook(lambda _m, args, _o: calls.append(args[0].shape[0]))
    gates = GateControl([0, 1.0, 0, 0, 0, 0])
    timesteps = sampling_timesteps(make_scheduler("ddim", animator.cfg), 6, 1.0)
    try:
        sampling.guidance_min_t = 0.5
        late = animator.render_frame(prepared, 0, gates, steps=6, strength=1.0, guidance_scale=3.0, sampler="ddim")
        guided_steps = sum(int(t) >= 500 for t in timesteps)
        assert 0 < guided_steps < len(timesteps) and sum(calls) == len(timesteps) + guided_steps
        sampling.guidance_min_t = 0.0
        everywhere = animator.render_frame(prepared, 0, gates, steps=6, strength=1.0, guidance_scale=3.0,
                                           sampler="ddim")
        assert not np.array_equal(late, everywhere)
    finally:
        sampling.guidance_min_t = 0.0
        hook.remove()


def test_lip_guidance_runs_a_silent_pass_at_the_late_steps_only(animator, prepared):
    """``audio_guidance_scale`` adds one U-Net pass with the audio of silence at ``t < max_t * T``."""
    sampling = animator.cfg.sampling
    seen_audio = []
    hook = animator.model.denoiser.register_forward_hook(lambda _m, args, _o: seen_audio.append(args[3]))
    gates = GateControl([0, 0, 0, 0, 0, 1.0])
    timesteps = sampling_timesteps(make_scheduler("ddim", animator.cfg), 6, 1.0)
    kwargs = {"steps": 6, "strength": 1.0, "guidance_scale": 1.0, "sampler": "ddim"}
    try:
        plain = animator.render_frame(prepared, 0, gates, **kwargs)
        assert len(seen_audio) == len(timesteps)
        seen_audio.clear()
        sampling.audio_guidance_scale, sampling.audio_guidance_max_t = 3.0, 0.5
        lips = animator.render_frame(prepared, 0, gates, **kwargs)
        late_steps = sum(int(t) < 500 for t in timesteps)
        passes = [row for batch in seen_audio for row in batch]  # a call may batch several passes
        assert 0 < late_steps < len(timesteps) and len(passes) == len(timesteps) + late_steps
        silence = animator.model.denoiser.encode_audio(
            torch.from_numpy(silent_windows(1, prepared.fps, animator.cfg.audio)))[0]
        silent_passes = [a for a in passes if torch.equal(a[0], silence)]
        assert len(silent_passes) == late_steps  # the extra passes hear silence, the others the speech
        assert not np.array_equal(lips, plain)
        seen_audio.clear()
        without_audio = animator.prepare(PORTRAIT)
        animator.render_frame(without_audio, 0, gates, **kwargs)
        assert seen_audio == [None] * len(timesteps)  # nothing to guide without an audio track
    finally:
        sampling.audio_guidance_scale, sampling.audio_guidance_max_t = 1.0, 1.0
        hook.remove()


def test_guidance_passes_batched_in_one_call_equal_separate_calls(animator, prepared):
    """The conditional and null passes of a step share one U-Net call; each row is what its own call gives."""
    denoiser, frames = animator.model.denoiser, [0, 1]
    latent = animator.cfg.latent_size
    mask = torch.zeros(len(frames), 6, latent, latent)
    mask[:, 2, : latent // 2] = 1.0
    painted = BatchGates(torch.tensor([[0, 0, 1.0, 0, 0, 0]] * 2), mask, (mask.flatten(2).amax(-1) > 0).float())
    neutral = BatchGates(torch.zeros(2, 6))
    audio = animator._audio_tokens(prepared, frames)
    silent = animator._silent_audio_tokens(prepared, frames)
    emotion = animator._emotion_tokens(prepared, np.array([[0, 0, 1.0, 0, 0, 0]] * 2, np.float32))
    reference = animator._reference(prepared)
    x = torch.randn(2, animator.cfg.latent_channels, latent, latent, generator=torch.Generator().manual_seed(0))
    passes = [(painted, audio, None), (neutral, audio, 3.0), (painted, silent, 2.0)]
    with torch.no_grad():
        batched = run_unet_passes(denoiser, x[None], torch.tensor(300), reference, emotion, passes)
        separate = [denoiser(x[None], torch.tensor(300), reference, a, emotion, g) for g, a, _ in passes]
    for one, other in zip(batched, separate, strict=True):
        assert torch.allclose(one, other, atol=1e-5)
    # several rows (the evaluator's label rows): each pass keeps its rows, in order
    rows = torch.cat([x[None], x[None].flip(1)])
    two = BatchGates(painted.global_weights.repeat(2, 1), painted.local_masks.repeat(2, 1, 1, 1),
                     painted.local_alpha.repeat(2, 1))
    passes = [(two, audio.repeat(2, 1, 1, 1), None), (BatchGates(torch.zeros(4, 6)), silent.repeat(2, 1, 1, 1), 2.0)]
    with torch.no_grad():
        batched = run_unet_passes(denoiser, rows, torch.tensor(300), reference, emotion.repeat(2, 1, 1, 1), passes)
        separate = [denoiser(rows, torch.tensor(300), reference, a, emotion.repeat(2, 1, 1, 1), g) for g, a, _ in passes]
    assert batched[0].shape == rows.shape
    for one, other in zip(batched, separate, strict=True):
        assert torch.allclose(one, other, atol=1e-5)


def test_a_step_combines_the_passes_of_the_active_guidances(animator):
    """Which passes a step runs, and how their predictions add up (one code path for studio and eval)."""
    cfg = animator.cfg
    saved = cfg.sampling
    cfg.sampling = SamplingConfig(guidance_scale=3.0, guidance_min_t=0.5, audio_guidance_scale=2.0,
                                  audio_guidance_max_t=0.5)
    gates, neutral = BatchGates(torch.ones(1, 6)), BatchGates(torch.zeros(1, 6))
    audio, silence = torch.ones(1, 1, 2, 3), torch.zeros(1, 1, 2, 3)
    heard = []
    try:
        early = guidance_passes(900, cfg, gates, audio, 3.0, neutral, lambda: heard.append(1) or silence)
        late = guidance_passes(100, cfg, gates, audio, 3.0, neutral, lambda: heard.append(1) or silence)
        assert [(g is neutral, a is silence, w) for g, a, w in early] == [(False, False, None), (True, False, 3.0)]
        assert [(g is neutral, a is silence, w) for g, a, w in late] == [(False, False, None), (False, True, 2.0)]
        assert heard == [1]  # silence is encoded only where lip guidance runs
        assert len(guidance_passes(100, cfg, gates, None, 3.0, neutral, lambda: silence)) == 1  # no audio: no lips
    finally:
        cfg.sampling = saved
    eps, eps_neutral, eps_silent = torch.full((2,), 1.0), torch.full((2,), 0.5), torch.full((2,), 0.75)
    combined = combine_guidance([eps, eps_neutral, eps_silent], [(gates, audio, None), (neutral, audio, 3.0),
                                                                 (gates, silence, 2.0)])
    assert torch.allclose(combined, eps + 2.0 * (eps - eps_neutral) + 1.0 * (eps - eps_silent))


def test_keep_background_shows_the_portraits_background(animator, prepared):
    """With ``keep_background`` the frame outside the (grown) person matte is the portrait itself."""
    from engine.io.face import portrait_background_weight

    gates = GateControl([0, 0, 1.0, 0, 0, 0])
    kwargs = {"steps": 2, "strength": 1.0, "guidance_scale": 1.0}
    generated = animator.render_frame(prepared, 0, gates, **kwargs)
    weight = portrait_background_weight(prepared.portrait)
    assert weight is not None and (weight == 1.0).any() and (weight == 0.0).any()
    try:
        animator.cfg.sampling.keep_background = True
        kept = animator.render_frame(prepared, 0, gates, **kwargs)
        clip = next(animator.render_clip(prepared, gates, stop=1, **kwargs)).image
    finally:
        animator.cfg.sampling.keep_background = False
    background, person = weight == 1.0, weight == 0.0
    assert np.array_equal(kept[background], prepared.portrait[background])
    assert np.array_equal(kept[person], generated[person])
    assert np.array_equal(clip[background], prepared.portrait[background])


def test_keep_background_leaves_a_portrait_without_a_person_as_generated(animator):
    grey = animator.prepare(np.full((32, 32, 3), 128, np.uint8), crop="none")
    kwargs = {"steps": 2, "strength": 1.0, "guidance_scale": 1.0}
    generated = animator.render_frame(grey, 0, GateControl([0.0] * 6), **kwargs)
    try:
        animator.cfg.sampling.keep_background = True
        for _ in range(2):  # the matte is looked for once per prepared portrait
            assert np.array_equal(animator.render_frame(grey, 0, GateControl([0.0] * 6), **kwargs), generated)
            assert grey.background_checked and grey.background_weight is None
    finally:
        animator.cfg.sampling.keep_background = False


def test_guidance_terms_add_up_to_classifier_free_guidance():
    eps, eps_neutral, eps_silent = torch.full((2, 3), 2.0), torch.zeros(2, 3), torch.ones(2, 3)
    assert torch.allclose(eps + guidance_term(eps, eps_neutral, 4.0), eps_neutral + 4.0 * (eps - eps_neutral))
    both = eps + guidance_term(eps, eps_neutral, 4.0) + guidance_term(eps, eps_silent, 3.0)
    assert torch.allclose(both, torch.full((2, 3), 2.0 + 3 * 2.0 + 2 * 1.0))
    assert torch.equal(eps + guidance_term(eps, eps_silent, 1.0), eps)  # scale 1 = off
    sampling = SamplingConfig(audio_guidance_scale=2.0, audio_guidance_max_t=0.5)
    assert audio_guidance_active(499, 1000, sampling) and not audio_guidance_active(500, 1000, sampling)
    sampling.audio_guidance_scale = 1.0
    assert not audio_guidance_active(0, 1000, sampling)


def test_silent_windows_are_the_windows_of_silence(animator):
    windows = silent_windows(5, 25, animator.cfg.audio)
    assert windows.shape[0] == 5 and np.allclose(windows, MEL_SILENCE)


def test_guidance_map_gives_the_mouth_its_own_scale():
    mouth = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    scale = guidance_scale_map(mouth, 4.0, 1.0)
    assert torch.allclose(scale, torch.tensor([[4.0, 2.5], [1.0, 4.0]]))
    eps, eps_neutral = torch.full((3, 4, 2, 2), 2.0), torch.zeros(3, 4, 2, 2)
    guided = emotion_guidance(eps, eps_neutral, guidance_scale_map(mouth, 4.0, 0.0))
    assert torch.equal(guided[:, :, 1, 0], eps_neutral[:, :, 1, 0])  # inside the mouth: no emotion at all
    assert torch.allclose(guided[:, :, 0, 0], torch.full((3, 4), 8.0))  # elsewhere: the full guidance


def test_latent_mouth_mask_covers_the_mouth_not_the_brows(animator, prepared):
    size, latent = animator.cfg.image_size, animator.cfg.latent_size
    mask = latent_mouth_mask(prepared.landmarks, size, latent).numpy()
    assert mask.shape == (latent, latent) and mask.min() >= 0.0 and mask.max() <= 1.0
    mouth = mouth_mask(prepared.landmarks, latent, latent, image_size=(size, size)) > 0.5
    assert mask[mouth].min() > 0.5  # the lips themselves are fully inside
    assert mask[: latent // 3].max() == 0.0  # the upper third of the face (brows) keeps the guidance


def test_mouth_guidance_leaves_the_mouth_to_the_audio(animator, prepared):
    """With a mouth scale of 0 the emotion is guided everywhere but the mouth, which renders as neutral."""
    gates = GateControl([0, 0, 1.0, 0, 0, 0])
    sampling = animator.cfg.sampling
    default = (sampling.guidance_scale, sampling.mouth_guidance_scale)
    kwargs = {"steps": 1, "strength": 1.0, "guidance_scale": 3.0}
    try:
        uniform = animator.render_frame(prepared, 0, gates, **kwargs).astype(float)
        sampling.mouth_guidance_scale = 3.0
        assert np.array_equal(uniform, animator.render_frame(prepared, 0, gates, **kwargs))
        sampling.mouth_guidance_scale = 0.0
        mouth_neutral = animator.render_frame(prepared, 0, gates, **kwargs).astype(float)
    finally:
        sampling.guidance_scale, sampling.mouth_guidance_scale = default
    size = animator.cfg.image_size
    mouth = mouth_mask(prepared.landmarks, size, size) > 0.5
    change = np.abs(mouth_neutral - uniform).mean(axis=2)
    assert change[mouth].mean() > 3 * change[~mouth].mean()


def test_no_face_in_a_landscape_image_is_a_clear_error(animator, tmp_path):
    flat = np.full((64, 160, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        animator.prepare(flat, SPEECH)
    prepared = animator.prepare(flat, SPEECH, crop="none")  # the user can opt out of face cropping
    assert prepared.landmarks is None


def test_a_real_photo_is_cropped_around_the_face(animator):
    prepared = animator.prepare(PHOTO, None, num_frames=4)
    assert prepared.num_frames == 4 and prepared.audio_windows is None
    points = prepared.landmarks
    assert points.min() > -2 and points.max() < 34  # the face fills the crop


def test_bad_inputs_lose_nothing(animator, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(InputImageError):
        animator.prepare(broken, SPEECH)
    with pytest.raises(InputAudioError):
        animator.prepare(PORTRAIT, (np.zeros(16000, np.float32), 16000))


def test_emotion_from_text(animator):
    assert max(animator.emotion_from_text("furious").items(), key=lambda kv: kv[1])[0] == "anger"
    top_two = sorted(animator.emotion_from_text("sadly surprised").items(), key=lambda kv: -kv[1])[:2]
    assert {name for name, _ in top_two} == {"sadness", "surprise"}
    assert animator.emotion_from_text("calm") == {}


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu():
    model = tiny_model()
    cpu = Animator(model, device="cpu")
    prepared_cpu = cpu.prepare(PORTRAIT, SPEECH)
    reference = cpu.render_frame(prepared_cpu, 0, GateControl([0.5, 0, 0, 0, 0, 0.5]), steps=3)
    gpu = Animator(tiny_model(), device="cuda")
    assert gpu.dtype.is_floating_point and gpu.dtype.itemsize == 2
    prepared_gpu = gpu.prepare(PORTRAIT, SPEECH)
    image = gpu.render_frame(prepared_gpu, 0, GateControl([0.5, 0, 0, 0, 0, 0.5]), steps=3)
    assert np.abs(image.astype(int) - reference.astype(int)).mean() < 3


@pytest.mark.parametrize("reference_concat", [False, True])
def test_cached_and_naive_paths_render_the_same_frame(reference_concat):
    animator = Animator(tiny_model(reference_concat=reference_concat), device="cpu")
    gates = GateControl([0.6, 0, 0, 0, 0, 0.4])
    cached = animator.render_frame(animator.prepare(PORTRAIT, SPEECH), 2, gates, steps=3)
    cached_again = animator.render_frame(animator.prepare(PORTRAIT, SPEECH), 2, gates, steps=3)
    animator.use_cache = False
    naive = animator.render_frame(animator.prepare(PORTRAIT, SPEECH), 2, gates, steps=3)
    assert np.array_equal(cached, cached_again)
    assert np.abs(cached.astype(int) - naive.astype(int)).max() <= 1

"""Procedural talking faces driven by FACS action units and an audio track, with ground truth.

One module per concern:

* :mod:`~training.synthetic.identities`: :class:`Identity` (every appearance parameter of one person,
  from a seed) and the FACS action units of the emotions (:data:`AU_LIST`, the EMFACS
  :data:`EMOTION_PROTOTYPES`, :func:`emotion_to_aus` for mixes);
* :mod:`~training.synthetic.speech`: speech (espeak-ng or a procedural voice, :func:`make_speech`) and
  the mouth opening it drives (:func:`mouth_open_from_audio`);
* :mod:`~training.synthetic.renderer`: :class:`FaceRenderer`, one frame and its 68 exact landmarks
  from an expression, a mouth opening, a blink and a head :class:`Pose`;
* :mod:`~training.synthetic.clips`: talking clips (:func:`synthesize_clip`, :class:`SyntheticClip`) and
  stills of random expressions (:func:`au_varied_frames`, :func:`mixed_emotion_frames`);
* :mod:`~training.synthetic.dataset`: a data set on disk (:func:`generate_dataset`, its layout) and the
  ``moee synth`` command (``python -m training.synthetic`` runs it too).

Everything is deterministic given the seeds. The names below are the package's public interface.
"""

from training.synthetic.clips import (
    AU_VARIED_DROPOUT,
    AU_VARIED_EXTRA_AU_SHARE,
    AU_VARIED_FACTOR,
    AU_VARIED_MAX_EMOTIONS,
    AU_VARIED_NEUTRAL_SHARE,
    BLINK_FRAMES,
    BLINK_INTERVAL_S,
    DEFAULT_FPS,
    HEAD_ROLL_DEG,
    HEAD_SCALE,
    HEAD_SHIFT,
    MIXED_NEUTRAL_SHARE,
    MIXED_SINGLE_SHARE,
    MIXED_SINGLE_WEIGHT,
    MIXED_SPLIT,
    MIXED_TOTAL,
    MIXED_WOBBLE,
    SyntheticClip,
    au_varied_frames,
    blink_track,
    head_motion,
    mixed_emotion_frames,
    mouth_box_from_landmarks,
    random_au_vector,
    random_emotion_mix,
    synthesize_clip,
)
from training.synthetic.dataset import (
    INDEX_VERSION,
    SPLIT_COMPOUND,
    SPLIT_TEST,
    SPLIT_TRAIN,
    TEST_FRACTION,
    TRAIN_MIX_WEIGHT,
    add_synth_arguments,
    generate_dataset,
    identity_id,
    random_training_mix,
    run_synth,
    split_identities,
    write_clip,
)
from training.synthetic.identities import (
    AU_LIST,
    BEARD_STYLES,
    EMOTION_PROTOTYPES,
    HAIR_COLOURS,
    HAIR_STYLES,
    IRIS_COLOURS,
    NEUTRAL,
    RENDER_EMOTIONS,
    SKIN_TONES,
    Identity,
    aus_to_vector,
    emotion_label,
    emotion_to_aus,
)
from training.synthetic.renderer import (
    AU26_OPEN_GAIN,
    BROW_L,
    BROW_R,
    DEFAULT_SIZE,
    EYE_L,
    EYE_R,
    JAW,
    LIPS_INNER,
    LIPS_OUTER,
    N_LANDMARKS,
    NOSE_BOTTOM,
    NOSE_BRIDGE,
    SPEECH_OPEN_GAIN,
    FaceRenderer,
    Pose,
    benchmark_fps,
    contact_sheet,
)
from training.synthetic.speech import (
    ENVELOPE_FLOOR,
    ENVELOPE_REFERENCE_PERCENTILE,
    SAMPLE_RATE,
    SMOOTHING_KERNEL,
    espeak_available,
    espeak_speech,
    make_speech,
    mouth_open_from_audio,
    procedural_speech,
    random_sentence,
    rms_envelope,
)

__all__ = [
    # identities and AUs
    "AU_LIST", "BEARD_STYLES", "EMOTION_PROTOTYPES", "HAIR_COLOURS", "HAIR_STYLES", "IRIS_COLOURS", "NEUTRAL",
    "RENDER_EMOTIONS", "SKIN_TONES", "Identity", "aus_to_vector", "emotion_label", "emotion_to_aus",
    # speech
    "ENVELOPE_FLOOR", "ENVELOPE_REFERENCE_PERCENTILE", "SAMPLE_RATE", "SMOOTHING_KERNEL", "espeak_available",
    "espeak_speech", "make_speech", "mouth_open_from_audio", "procedural_speech", "random_sentence", "rms_envelope",
    # renderer
    "AU26_OPEN_GAIN", "BROW_L", "BROW_R", "DEFAULT_SIZE", "EYE_L", "EYE_R", "JAW", "LIPS_INNER", "LIPS_OUTER",
    "N_LANDMARKS", "NOSE_BOTTOM", "NOSE_BRIDGE", "SPEECH_OPEN_GAIN", "FaceRenderer", "Pose", "benchmark_fps",
    "contact_sheet",
    # clips and stills
    "AU_VARIED_DROPOUT", "AU_VARIED_EXTRA_AU_SHARE", "AU_VARIED_FACTOR", "AU_VARIED_MAX_EMOTIONS",
    "AU_VARIED_NEUTRAL_SHARE", "BLINK_FRAMES", "BLINK_INTERVAL_S", "DEFAULT_FPS", "HEAD_ROLL_DEG", "HEAD_SCALE",
    "HEAD_SHIFT", "MIXED_NEUTRAL_SHARE", "MIXED_SINGLE_SHARE", "MIXED_SINGLE_WEIGHT", "MIXED_SPLIT", "MIXED_TOTAL",
    "MIXED_WOBBLE", "SyntheticClip", "au_varied_frames", "blink_track", "head_motion", "mixed_emotion_frames",
    "mouth_box_from_landmarks", "random_au_vector", "random_emotion_mix", "synthesize_clip",
    # data sets and the CLI
    "INDEX_VERSION", "SPLIT_COMPOUND", "SPLIT_TEST", "SPLIT_TRAIN", "TEST_FRACTION", "TRAIN_MIX_WEIGHT",
    "add_synth_arguments", "generate_dataset", "identity_id", "random_training_mix", "run_synth",
    "split_identities", "write_clip",
]

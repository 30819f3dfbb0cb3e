"""Keyframe interpolation (pure) and the document's per-frame gates."""

from __future__ import annotations

import numpy as np
import pytest

from studio.keyframes import Keyframe, ease, masks_at, sample_curves, weights_at


def test_linear_and_smoothstep_between_keys() -> None:
    keys = [Keyframe(0, [0.0, 1.0]), Keyframe(10, [1.0, 0.0])]
    assert weights_at(keys, 5, "linear") == pytest.approx([0.5, 0.5])
    assert weights_at(keys, 2.5, "linear") == pytest.approx([0.25, 0.75])
    s = ease(0.25, "smoothstep")
    assert s == pytest.approx(0.15625)
    assert weights_at(keys, 2.5, "smoothstep") == pytest.approx([s, 1 - s])


def test_values_hold_outside_the_keys_and_order_does_not_matter() -> None:
    keys = [Keyframe(20, [0.2]), Keyframe(5, [0.8])]
    assert weights_at(keys, 0) == pytest.approx([0.8])
    assert weights_at(keys, 99) == pytest.approx([0.2])
    assert weights_at([], 3) is None


def test_masks_interpolate_only_between_keys_that_carry_masks() -> None:
    m0 = np.zeros((2, 4, 4), np.float32)
    m1 = np.ones((2, 4, 4), np.float32)
    keys = [Keyframe(0, [0, 0], m0, [1.0, 1.0]), Keyframe(4, [1, 1]), Keyframe(8, [0, 0], m1, [0.0, 1.0])]
    masks, alpha = masks_at(keys, 4, "linear")
    assert np.allclose(masks, 0.5)
    assert alpha == pytest.approx([0.5, 1.0])
    assert masks_at([Keyframe(0, [0.0])], 3) is None


def test_sample_curves_shape() -> None:
    curves = sample_curves([Keyframe(0, [0, 1]), Keyframe(4, [1, 0])], 5, 2, "linear")
    assert curves.shape == (5, 2)
    assert curves[:, 0] == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_document_gates_follow_the_timeline(qtbot) -> None:
    from studio.document import Document

    doc = Document()
    doc.add_keyframe(Keyframe(0, [1, 0, 0, 0, 0, 0]))
    doc.add_keyframe(Keyframe(10, [0, 0, 0, 0, 0, 1]))
    doc.render.interpolation = "linear"
    gates = doc.gates_for_frame(5)
    assert list(gates.global_weights) == pytest.approx([0.5, 0, 0, 0, 0, 0.5])
    assert gates.local_masks is None  # nothing painted -> no local override
    doc.set_weights([0, 0.3, 0, 0, 0, 0])
    assert list(doc.gates_for_frame(None).global_weights) == pytest.approx([0, 0.3, 0, 0, 0, 0])
    doc.set_normalise(True)
    assert list(doc.gates_for_frame(None).global_weights) == pytest.approx([0, 1, 0, 0, 0, 0])

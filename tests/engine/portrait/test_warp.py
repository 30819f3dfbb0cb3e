"""The mesh warp (engine/portrait/warp.py): a triangle squeezed to a sliver must not sample far-away pixels
along its edges (seen as a dotted line of hair or suit on the background beside the astronaut's shouting
anger), and a strong expression on a wide-smiling sitter must not fold the mesh."""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from engine.portrait.warp import mesh_warp

SIZE = 64


def test_a_squeezed_triangle_samples_only_near_its_own_source() -> None:
    xs = np.arange(SIZE)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[..., 0] = xs[None, :] * 4  # each pixel says where it came from: x * 4 in red
    corners = [[0, 0], [SIZE - 1, 0], [0, SIZE - 1], [SIZE - 1, SIZE - 1]]
    for offset in (0.2, 0.4, 0.6, 0.8):  # sub-pixel placements of the sliver
        source = np.array([*corners, [32 + offset, 16], [32 + offset, 48], [48, 32], [12, 32]], np.float64)
        triangles = Delaunay(source).simplices
        assert {4, 5, 6} in [set(t) for t in triangles.tolist()]
        moving_sources = source[triangles[(triangles == 6).any(axis=1)]].reshape(-1, 2)
        for thickness in (0.05, 0.1, 0.2, 0.3):
            target = source.copy()
            target[6] = (32 + offset + thickness, 32.0)  # the triangle (A, B, C) becomes a sliver
            frame, _ = mesh_warp(image, source, target, triangles)
            changed = np.any(frame != image, axis=2)
            sampled_x = frame[..., 0][changed] / 4.0
            assert sampled_x.min() >= moving_sources[:, 0].min() - 1.5, (
                f"a pixel sampled x={sampled_x.min():.1f}, far outside the moving triangles "
                f"(offset {offset}, thickness {thickness})")


def test_no_emotion_folds_the_mesh_of_a_wide_smiling_sitter(animator, still) -> None:
    """The astronaut smiles wide with her teeth: neutralising that smile and then frowning, shouting or
    screaming moves her lip corners far; the targets must not flip triangles outside the lips' and eyes'
    openings (flipped triangles tore her lip corners into jagged steps: 34 of them under sadness with
    12 rounds of relaxation)."""
    from engine.moee import GateControl
    from engine.portrait.warp import signed_areas

    rig = still.rig
    openings = rig.across_mouth | still.eye_triangles()
    source_areas = signed_areas(rig.control, rig.triangles)
    for emotion in range(len(animator.emotions) + 1):
        weights = np.zeros(len(animator.emotions), np.float32)
        if emotion < len(animator.emotions):
            weights[emotion] = 1.0
        target = animator.control_targets(still, GateControl(weights), 0)
        flipped = (signed_areas(target, rig.triangles) * np.sign(source_areas) < 0) & ~openings
        assert flipped.sum() <= 5, f"{int(flipped.sum())} triangles folded at weights {weights.tolist()}"


def test_the_upper_lip_stays_one_band_when_the_jaw_drops_on_a_wide_smiling_sitter(animator, still) -> None:
    """The astronaut's wide smile lifts her mouth corners above the middle of her upper lip. The rings inside
    her upper lip (between its outer and inner contours) must move with the upper lip when surprise drops
    the jaw; they moved with the lower lip (a flap of upper lip hanging into the open mouth, the folds that
    drew a serrated edge and a spike into her philtrum)."""
    from engine.moee import GateControl
    from engine.portrait.rig import (
        MESH_ROWS,
        MP_INNER_UPPER,
        MP_OUTER_UPPER,
        MP_SEMI_INNER_UPPER,
        MP_SEMI_OUTER_UPPER,
    )

    surprise = np.zeros(len(animator.emotions), np.float32)
    surprise[animator.emotions.index("surprise")] = 1.0
    down = animator.control_targets(still, GateControl(surprise), 0)[:, 1] - still.rig.control[:, 1]
    middle = slice(2, -2)  # the corners' columns serve both lips
    outer = down[[MESH_ROWS[i] for i in MP_OUTER_UPPER]][middle]
    inner = down[[MESH_ROWS[i] for i in MP_INNER_UPPER]][middle]
    for ring in (MP_SEMI_OUTER_UPPER, MP_SEMI_INNER_UPPER):
        moved = down[[MESH_ROWS[i] for i in ring]][middle]
        overshoot = moved - np.maximum(outer, inner)
        assert overshoot.max() < 1.5, f"the upper lip's ring dropped {overshoot.max():.1f} px below its contours"

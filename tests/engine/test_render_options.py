"""The strict contract (issue "One engine"): every render option of the shared vocabulary walked through both
renderers. The pixel renderer reads each; the portrait renderer, which has no sampling, refuses each by name
(TypeError, like any unknown keyword); engine.animator.render_options and engine.export.export_clip pass a renderer
only the options its Capabilities say it reads. And docs/ARCHITECTURE.md's renderers' table tells the same story
as the Capabilities."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from engine.animator import (
    CAPABILITY_RENDER_OPTIONS,
    RENDERER_CAPABILITIES,
    SAMPLING_OPTIONS,
    Capabilities,
    render_options,
)
from engine.export import export_clip
from engine.moee import GateControl

#: A value of each render option, other than the pixel renderer's default.
VALUES = {"steps": 1, "seed": 3, "sampler": "ddim", "strength": 0.9, "guidance_scale": 1.5}
DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


@pytest.fixture(scope="module")
def crop(pixel):
    return pixel.prepare(data.astronaut()[::8, ::8].copy(), crop="none")


def test_the_vocabulary_is_the_capabilities_options() -> None:
    assert set(VALUES) == SAMPLING_OPTIONS
    assert set(CAPABILITY_RENDER_OPTIONS) <= {f.name for f in fields(Capabilities)}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_each_option_through_both_renderers(name, portrait, pixel, still, crop) -> None:
    option = {name: VALUES[name]}
    capability = next(cap for cap, names in CAPABILITY_RENDER_OPTIONS.items() if name in names)
    # the portrait renderer has no sampling: refused by name, saying which capability it lacks
    with pytest.raises(TypeError, match=rf"'{name}'.*no {capability}"):
        portrait.render_frame(still, 0, None, **option)
    with pytest.raises(TypeError, match=rf"'{name}'"):
        list(portrait.render_clip(still, None, **option))
    assert render_options(portrait, **option) == {}
    # the pixel renderer reads it
    assert render_options(pixel, **option) == option
    frame = pixel.render_frame(crop, 0, None, **{"steps": 1, **option})
    assert frame.shape == crop.portrait.shape and frame.dtype == np.uint8


def test_render_options_leaves_out_unset_values_and_passes_the_rest(portrait, pixel) -> None:
    assert render_options(pixel, steps=None, seed=2) == {"seed": 2}  # None: the renderer's own default
    assert render_options(portrait, steps=4, cancel=None, start=1) == {"start": 1}


def test_export_passes_only_what_each_renderer_reads(portrait, pixel, still, crop, tmp_path) -> None:
    def export(animator, prepared, folder, **options):
        export_clip(animator, prepared, tmp_path / folder, format="png", gates=GateControl(), **options)
        return np.asarray(Image.open(next((tmp_path / folder).iterdir())))

    # every option given: the portrait renderer renders as without them (it reads none of them)
    assert np.array_equal(export(portrait, still, "p_all", **VALUES), export(portrait, still, "p_none"))
    # the pixel renderer reads them: another seed is another frame
    first = export(pixel, crop, "x_seed3", **{**VALUES, "guidance_scale": None})
    assert first.shape == crop.portrait.shape
    assert not np.array_equal(first, export(pixel, crop, "x_seed4", **{**VALUES, "guidance_scale": None, "seed": 4}))


def _doc_table() -> dict[str, tuple[str, str]]:
    """capability -> (portrait cell, pixel cell) of docs/ARCHITECTURE.md's renderers' table."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(\w+)` \|", line)
        if match and match.group(1) in {f.name for f in fields(Capabilities)}:
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            rows[match.group(1)] = (cells[-2], cells[-1])
    return rows


def test_the_architecture_table_matches_the_capabilities() -> None:
    table = _doc_table()
    assert set(table) == {f.name for f in fields(Capabilities)}, "a capability is missing from the table"
    for capability, (portrait_cell, pixel_cell) in table.items():
        for renderer, cell in (("portrait", portrait_cell), ("pixel", pixel_cell)):
            has = capability in RENDERER_CAPABILITIES[renderer].names()
            assert cell.startswith("yes") == has, f"{capability}: the table's {renderer} cell says {cell!r}"

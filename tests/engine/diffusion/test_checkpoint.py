"""Model folders and expert packs: safetensors round trips and clear errors for wrong files."""

import json
import pickle

import pytest
import torch

from engine.diffusion.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_expert_pack,
    load_model,
    read_expert_metadata,
    save_expert_pack,
    save_model,
)
from engine.errors import CheckpointError
from tests.engine.diffusion.test_unet import run
from tests.engine_helpers import randomise_new_modules, tiny_model


def test_model_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "m", notes={"trained": False})
    loaded = load_model(tmp_path / "m")
    assert loaded.emotions == model.emotions
    torch.testing.assert_close(run(loaded, [0.3, 0, 0.7, 0, 0, 0]), run(model, [0.3, 0, 0.7, 0, 0, 0]))
    assert json.loads((tmp_path / "m" / CONFIG_FILE).read_text())["format_version"] == 1


def test_fp16_checkpoint_is_half_the_size_and_loads(tmp_path):
    model = tiny_model()
    save_model(model, tmp_path / "full")
    save_model(model, tmp_path / "half", dtype=torch.float16)
    full = (tmp_path / "full" / WEIGHTS_FILE).stat().st_size
    half = (tmp_path / "half" / WEIGHTS_FILE).stat().st_size
    assert half < 0.6 * full
    loaded = load_model(tmp_path / "half")
    assert (run(loaded, [1.0, 0, 0, 0, 0, 0]) - run(model, [1.0, 0, 0, 0, 0, 0])).abs().max() < 0.05


def test_other_format_version_is_refused(tmp_path):
    save_model(tiny_model(), tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["format_version"] = 99
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_model(tmp_path)


def test_missing_keys_are_listed(tmp_path):
    from safetensors.torch import load_file, save_file

    save_model(tiny_model(), tmp_path)
    state = load_file(tmp_path / WEIGHTS_FILE)
    state.pop("denoiser.extras.0.moe.gate_global.weight")
    save_file(state, tmp_path / WEIGHTS_FILE)
    with pytest.raises(CheckpointError, match="1 missing keys.*gate_global"):
        load_model(tmp_path)


def test_a_pickle_is_never_loaded(tmp_path):
    save_model(tiny_model(), tmp_path)
    (tmp_path / WEIGHTS_FILE).write_bytes(pickle.dumps({"weights": 1}))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_model(tmp_path / "nowhere")


def test_expert_pack_round_trip_adds_a_slider(tmp_path):
    base = tiny_model()
    save_model(base, tmp_path / "base")
    trainer_copy = load_model(tmp_path / "base")
    trainer_copy.add_emotion("smug", "#aa00ff")
    randomise_new_modules(trainer_copy, seed=5)  # stands in for training the new slot
    pack = save_expert_pack(trainer_copy, "smug", tmp_path / "smug.moeexpert.safetensors")
    assert read_expert_metadata(pack)["emotion"] == "smug"

    studio_model = load_model(tmp_path / "base")
    assert load_expert_pack(studio_model, pack) == "smug"
    assert studio_model.emotions[-1] == "smug" and studio_model.colours["smug"] == "#aa00ff"
    smug = [0, 0, 0, 0, 0, 0, 1.0]
    for a, b in zip(studio_model.denoiser.moe_layers, trainer_copy.denoiser.moe_layers, strict=True):
        torch.testing.assert_close(a.experts[6].to_out.weight, b.experts[6].to_out.weight)
        torch.testing.assert_close(a.gate_global.weight[6], b.gate_global.weight[6])
    neutral = run(studio_model, [0.0] * 7)
    assert (run(studio_model, smug) - neutral).abs().mean() > 1e-5


def test_expert_pack_for_another_base_model_is_refused(tmp_path):
    donor = tiny_model(seed=1)
    donor.add_emotion("smug")
    pack = save_expert_pack(donor, "smug", tmp_path / "smug.moeexpert.safetensors")
    with pytest.raises(CheckpointError, match="another base model"):
        load_expert_pack(tiny_model(seed=2), pack)


def test_a_model_file_is_not_an_expert_pack(tmp_path):
    save_model(tiny_model(), tmp_path)
    with pytest.raises(CheckpointError, match="not a MoEE expert pack"):
        load_expert_pack(tiny_model(), tmp_path / WEIGHTS_FILE)


@pytest.mark.parametrize(("config", "field"), [
    ([1, 2], "holds a JSON list"),
    ({"image_size": "32"}, "image_size must be a whole number"),
    ({"emotions": 42}, "emotions must be a list"),
    ({"vae_channels": [8, 6]}, "vae.block_out_channels [8, 6] do not fit vae.norm_num_groups 4"),
])
def test_a_bad_config_json_names_the_file_and_the_field(tmp_path, config, field):
    """These were raw tracebacks (AttributeError, TypeError, ValueError from the network's constructor)."""
    folder = save_model(tiny_model(), tmp_path / "m")
    data = json.loads((folder / CONFIG_FILE).read_text())
    if isinstance(config, list):
        data = config
    elif "image_size" in config:
        data["config"]["image_size"] = config["image_size"]
    elif "emotions" in config:
        data["emotions"] = config["emotions"]
    else:
        data["config"]["vae"]["block_out_channels"] = config["vae_channels"]
    (folder / CONFIG_FILE).write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="config.json") as caught:
        load_model(folder)
    assert field in str(caught.value)

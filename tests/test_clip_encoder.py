"""The open_clip encoder's plumbing. These tests use a RANDOMLY INITIALISED CLIP text tower saved to a
local file (no pretrained weights can be downloaded here): they check loading, identity, shapes,
normalisation and error handling, not the quality of the embeddings."""
from __future__ import annotations

import numpy as np
import pytest

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from scaledet.labelspace.encoders import ClipEncoder  # noqa: E402
from scaledet.labelspace.errors import EncoderError  # noqa: E402

ARCH = "RN50"  # the smallest text tower among open_clip's built-in configs that loads quickly


@pytest.fixture(scope="module")
def random_clip_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("clip") / "random_rn50.pt"
    torch.save(model.state_dict(), path)
    return path


def test_clip_encoder_loads_a_local_checkpoint_and_encodes(random_clip_weights):
    encoder = ClipEncoder(arch=ARCH, weights=random_clip_weights)
    vectors = encoder.encode(["a photo of a fish.", "a photo of a shark.", "a photo of a fish."])
    assert vectors.shape == (3, encoder.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert encoder.identity.startswith(f"clip:{ARCH}:sha256=") and "random" not in encoder.identity


def test_clip_weights_of_another_architecture_are_rejected_in_one_line(random_clip_weights):
    encoder = ClipEncoder(arch="ViT-B-32", weights=random_clip_weights)
    with pytest.raises(EncoderError) as info:
        encoder.encode(["a photo of a fish."])
    assert str(random_clip_weights) in str(info.value) and "not an open_clip ViT-B-32 checkpoint" in str(info.value)
    assert "\n" not in str(info.value)


def test_clip_weights_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "weights.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderError, match="not an open_clip"):
        ClipEncoder(arch=ARCH, weights=junk).encode(["x"])
    with pytest.raises(EncoderError, match="not found"):
        ClipEncoder(arch=ARCH, weights=tmp_path / "missing.pt")

"""The Siamese distance network and its use: heads, the encoder, saving, distance matrices."""

import json

import numpy as np
import pytest

import keras
from keras import ops

from conftest import SMALL_NETWORK, synthetic_images
from cryoposes import imaging, recovery, rotations, siamese
from cryoposes.errors import InputError
from cryoposes.options import TURNS


@pytest.mark.parametrize("head, upper", [("rotation", np.pi), ("cosine", np.pi), ("euclidean", np.inf)])
def test_heads_are_symmetric_non_negative_and_bounded(head, upper):
    embeddings = np.random.default_rng(1).standard_normal((40, 8))
    distances = siamese.pairwise_head(embeddings, embeddings, head)
    assert distances.shape == (40, 40)
    np.testing.assert_allclose(distances, distances.T, atol=1e-12)
    assert distances.min() >= 0 and distances.max() <= upper
    assert np.all(np.diag(distances) < 3e-3)
    tensor = ops.convert_to_numpy(siamese.pairwise_head(ops.convert_to_tensor(embeddings), ops.convert_to_tensor(embeddings), head, xp=ops))
    # Off the diagonal, where single precision (JAX's default) does not cancel to its floor.
    apart = ~np.eye(40, dtype=bool)
    np.testing.assert_allclose(tensor[apart], distances[apart], atol=1e-5)
    assert np.all(np.diag(tensor) < 3e-3)


def test_rotation_head_is_the_geodesic_distance_for_rotation_matrix_embeddings():
    quaternions = rotations.random_quaternions(50, np.random.default_rng(2))
    embeddings = rotations.quaternion_to_matrix(quaternions).reshape(50, 9) / np.sqrt(3)
    expected = rotations.pairwise_geodesic_distances(quaternions)
    off_diagonal = ~np.eye(50, dtype=bool)
    np.testing.assert_allclose(siamese.pairwise_head(embeddings, embeddings)[off_diagonal],
                               expected[off_diagonal], atol=1e-5)
    # The paper's head is exact only on quaternion embeddings with ⟨q_i, q_j⟩ ≥ 0: the others
    # (q and −q are one rotation) are pinned at π.
    cosine = siamese.pairwise_head(quaternions, quaternions, "cosine")
    positive = (quaternions @ quaternions.T > 0) & off_diagonal
    np.testing.assert_allclose(cosine[positive], expected[positive], atol=1e-5)
    np.testing.assert_allclose(cosine[~positive & off_diagonal], np.pi)


def test_unknown_head_and_normalization_are_rejected():
    with pytest.raises(ValueError, match="unknown head"):
        siamese.SiameseDistance(32, head="manhattan")
    with pytest.raises(ValueError, match="unknown normalization"):
        siamese.SiameseDistance(32, normalization="layer")


def test_model_outputs_the_batch_distance_matrix_and_embeddings():
    model = siamese.SiameseDistance(32, filters=(8, 16), embedding=12)
    images, _ = synthetic_images(n=5)
    assert tuple(model(images).shape) == (5, 5)
    assert tuple(model.embed(images).shape) == (5, 12)


def test_test_indices_check_the_dataset_size(trained):
    model, path, images, _ = trained
    np.testing.assert_array_equal(siamese.test_indices(path, len(images)), model.metadata["split"]["test"])
    with pytest.raises(ValueError, match="trained on a dataset of 96 images"):
        siamese.test_indices(path, 50)


def test_save_and_load_give_identical_distances(trained, tmp_path):
    model, path, images, _ = trained
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, siamese.SiameseDistance) and loaded.head == model.head
    np.testing.assert_array_equal(siamese.distance_matrix(loaded, images[:20]),
                                  siamese.distance_matrix(model, images[:20]))
    for key, indices in siamese.load_split(path).items():
        np.testing.assert_array_equal(indices, model.metadata["split"][key])
    (tmp_path / "bad.keras").write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a readable Keras model"):
        siamese.load(tmp_path / "bad.keras")


def test_distance_matrix_is_symmetric_with_small_diagonal_and_matches_the_model(trained):
    model, path, images, _ = trained
    distances = siamese.distance_matrix(path, images[:30], turns=1)
    assert distances.dtype == np.float64 and distances.shape == (30, 30)
    np.testing.assert_array_equal(distances, distances.T)
    assert np.all(np.diag(distances) < 3e-3) and np.all(distances <= np.pi)
    np.testing.assert_allclose(distances, ops.convert_to_numpy(model(images[:30])), atol=1e-4)
    with pytest.raises(ValueError, match="32×32"):
        siamese.distance_matrix(model, np.zeros((3, 16, 16)))


def test_the_encoder_sees_only_the_central_crop_downsampled():
    model = siamese.SiameseDistance(40, crop=24, input_size=16, **SMALL_NETWORK)
    images = np.random.default_rng(5).standard_normal((6, 40, 40)).astype(np.float32)
    changed = images.copy()
    changed[:, :8] += 100.0  # rows outside the central 24 px
    np.testing.assert_allclose(siamese.embed(model, images), siamese.embed(model, changed), atol=1e-6)
    changed = images.copy()
    changed[:, 20, 20] += 100.0  # the centre pixel 40 // 2 is inside
    assert np.abs(siamese.embed(model, images) - siamese.embed(model, changed)).max() > 1e-3
    assert model.encoder.get_layer("downsample").output.shape[1:3] == (16, 16)
    with pytest.raises(ValueError, match="crop must be between 1 and the image size 40"):
        siamese.SiameseDistance(40, crop=48, **SMALL_NETWORK)
    with pytest.raises(ValueError, match="input size must be between 1 and the crop 24"):
        siamese.SiameseDistance(40, crop=24, input_size=30, **SMALL_NETWORK)


def test_turn_averaged_distances_average_over_quarter_turns(trained):
    model, _, images, _ = trained
    plain = siamese.distance_matrix(model, images, turns=1)
    np.testing.assert_array_equal(siamese.distance_matrix(model, images),
                                  siamese.distance_matrix(model, images, turns=TURNS))
    averaged = siamese.distance_matrix(model, images, turns=4)
    assert averaged.shape == plain.shape and np.allclose(averaged, averaged.T)
    assert np.abs(averaged - plain).max() > 1e-4
    # Quarter turns about the centre pixel are exact on the grid (the border aside), so images
    # turned by 90° beforehand give the same four turns in another order.
    size = images.shape[-1]
    framed = np.zeros_like(images)
    framed[:, 4:size - 3, 4:size - 3] = images[:, 4:size - 3, 4:size - 3]
    turned = imaging.rotate_images(framed, np.full(len(framed), np.pi / 2))
    np.testing.assert_allclose(siamese.distance_matrix(model, turned, turns=4),
                               siamese.distance_matrix(model, framed, turns=4), atol=1e-4)
    with pytest.raises(ValueError, match="turns must be a positive integer"):
        siamese.distance_matrix(model, images, turns=0)



def test_embedding_targets_in_the_graph_match_numpy_and_the_matrix():
    model = siamese.SiameseDistance(32, embedding=12)
    images = np.random.default_rng(3).standard_normal((20, 32, 32))
    targets = siamese.EmbeddingTargets(siamese.turned_embeddings(model, images, turns=3), model.head)
    matrix = siamese.distance_matrix(model, images, turns=3)
    i, j = np.array([0, 3, 19, 7]), np.array([5, 3, 2, 11])
    held = {name: ops.convert_to_tensor(array) for name, array in targets.tensors().items()}
    in_graph = ops.convert_to_numpy(targets.pairs(held, ops.convert_to_tensor(i), ops.convert_to_tensor(j)))
    np.testing.assert_allclose(in_graph, targets.lookup(i, j), atol=1e-5)
    np.testing.assert_allclose(targets.lookup(i, j), matrix[i, j], atol=1e-5)
    np.testing.assert_allclose(targets.block([1, 2], [4, 5, 6]), matrix[np.ix_([1, 2], [4, 5, 6])], atol=1e-5)


@pytest.mark.parametrize("head, agreement", [("rotation", 1.0), ("euclidean", 0.99), ("cosine", 0.9)])
def test_embedding_neighbours_are_the_nearest_under_the_learned_distance(head, agreement):
    # Found without the N×N matrix; the same lists as the matrix gives (the cosine head ties
    # every pair of negative cosine at π, so there the order among ties may differ).
    embeddings = np.random.default_rng(4).standard_normal((600, 3, 8))
    targets = siamese.EmbeddingTargets(embeddings, head)
    everyone = np.arange(600)
    expected = recovery.nearest_neighbours(targets.block(everyone, everyone), 8)[:, 1].reshape(600, 8)
    found = targets.neighbours(8)
    assert found.shape == (4800, 2) and np.array_equal(found[:, 0], np.repeat(everyone, 8))
    found = found[:, 1].reshape(600, 8)
    shared = np.mean([len(set(a) & set(b)) for a, b in zip(expected, found)]) / 8
    assert shared >= agreement
    with pytest.raises(ValueError, match="k ≥ 1"):
        targets.neighbours(0)


def test_embeddings_resume_from_their_checkpoint(tmp_path, monkeypatch):
    model = siamese.SiameseDistance(16, filters=(4, 8), embedding=6)
    images = np.random.default_rng(4).standard_normal((4096 + 300, 16, 16)).astype(np.float32)
    whole = siamese.turned_embeddings(model, images, turns=4)
    checkpoint = tmp_path / "work" / "embeddings.npy"
    real_embed, calls = siamese.embed, []

    def stop_in_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 4:  # 4 turns of the first chunk of 4,096 images, then a stop
            raise KeyboardInterrupt
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(siamese, "embed", stop_in_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        siamese.turned_embeddings(model, images, turns=4, checkpoint=checkpoint)
    assert json.loads(checkpoint.with_suffix(".json").read_text())["done"] == 4096
    monkeypatch.setattr(siamese, "embed", real_embed)
    calls.clear()
    resumed = siamese.turned_embeddings(model, images, turns=4, checkpoint=checkpoint)
    np.testing.assert_array_equal(resumed, whole)
    # Other images (or another model, other turns) are embedded again, not read back.
    other = siamese.turned_embeddings(model, images[::-1].copy(), turns=4, checkpoint=checkpoint)
    np.testing.assert_array_equal(other, whole[::-1])
    with pytest.raises(ValueError, match=".npy"):
        siamese.turned_embeddings(model, images, checkpoint=tmp_path / "embeddings.bin")

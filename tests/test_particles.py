"""Datasets on disk: .mrcs + RELION .star, atomic writes, pose files."""

import mrcfile
import numpy as np
import pytest
import starfile

from cryoposes import particles, star
from cryoposes.ctf import CTFParameters
from cryoposes.rotations import canonical, euler_to_quaternion, random_quaternions


def assert_same_rotations(a, b):
    np.testing.assert_allclose(canonical(a), canonical(b), atol=1e-8)


def make_dataset(count=5, size=16, with_ctf=True, seed=0):
    rng = np.random.default_rng(seed)
    ctf = None
    if with_ctf:
        ctf = CTFParameters(defocus_u=rng.uniform(1e4, 2e4, count), defocus_v=rng.uniform(5e3, 1e4, count),
                            defocus_angle=rng.uniform(0, 180, count), voltage=300.0,
                            spherical_aberration=2.7, amplitude_contrast=0.1)
    return particles.ParticleDataset(
        images=rng.standard_normal((count, size, size)).astype(np.float32),
        quaternions=random_quaternions(count, rng),
        shifts=rng.uniform(-3, 3, (count, 2)),
        pixel_size=3.25,
        ctf=ctf,
        metadata={"protein": "5j0n", "snr_db": -12.0, "seed": 7, "coverage": "half", "ctf": with_ctf},
    )


@pytest.mark.parametrize("with_ctf", [True, False])
def test_round_trip(tmp_path, with_ctf):
    dataset = make_dataset(with_ctf=with_ctf)
    folder = particles.write_dataset(dataset, tmp_path / "data")
    assert sorted(p.name for p in folder.iterdir()) == ["particles.mrcs", "particles.star"]
    back = particles.read_dataset(folder)
    np.testing.assert_array_equal(back.images, dataset.images)
    assert_same_rotations(back.quaternions, dataset.quaternions)
    np.testing.assert_allclose(back.shifts, dataset.shifts, atol=1e-8)
    assert back.pixel_size == pytest.approx(dataset.pixel_size)
    assert back.metadata == dataset.metadata
    if with_ctf:
        for name, value in dataset.ctf.per_particle(len(dataset)).items():
            np.testing.assert_allclose(getattr(back.ctf, name), value, rtol=1e-9)
    else:
        assert back.ctf is None


def test_files_are_what_relion_reads(tmp_path):
    dataset = make_dataset(count=3)
    folder = particles.write_dataset(dataset, tmp_path / "data")
    with mrcfile.open(folder / "particles.mrcs") as stack:
        assert stack.is_image_stack()
        assert stack.data.shape == (3, 16, 16)
        assert float(stack.voxel_size.x) == pytest.approx(3.25)
    star = starfile.read(folder / "particles.star", always_dict=True)
    table, optics = star["particles"], star["optics"]
    assert list(table["rlnImageName"]) == ["000001@particles.mrcs", "000002@particles.mrcs", "000003@particles.mrcs"]
    for column in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst",
                   "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnOpticsGroup"):
        assert column in table.columns
    for column in ("rlnImagePixelSize", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        assert column in optics.columns
    # RELION's origin is the offset back to the centre: minus the applied shift, in Å.
    np.testing.assert_allclose(table["rlnOriginXAngst"], -dataset.shifts[:, 0] * 3.25, rtol=1e-8)
    # Angles are RELION's rot, tilt, psi in degrees.
    q = euler_to_quaternion(*np.radians(table[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy().T))
    assert_same_rotations(q, dataset.quaternions)


def test_existing_folder_is_refused_unless_overwriting(tmp_path):
    folder = tmp_path / "data"
    particles.write_dataset(make_dataset(seed=1), folder)
    with pytest.raises(ValueError, match="not empty"):
        particles.write_dataset(make_dataset(seed=2), folder)
    np.testing.assert_array_equal(particles.read_dataset(folder).images, make_dataset(seed=1).images)
    particles.write_dataset(make_dataset(seed=2), folder, overwrite=True)
    np.testing.assert_array_equal(particles.read_dataset(folder).images, make_dataset(seed=2).images)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folders left
    empty = tmp_path / "empty"
    empty.mkdir()
    particles.write_dataset(make_dataset(), empty)
    assert (empty / "particles.star").is_file()


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(particles.starfile, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        particles.write_dataset(make_dataset(), tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_bad_metadata_is_refused(tmp_path):
    dataset = make_dataset()
    dataset.metadata["array"] = np.zeros(3)
    with pytest.raises(ValueError, match="metadata"):
        particles.write_dataset(dataset, tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


def test_dataset_validation():
    good = make_dataset()
    with pytest.raises(ValueError, match="quaternions"):
        particles.ParticleDataset(good.images, good.quaternions[:2])
    with pytest.raises(ValueError, match="pixel size"):
        particles.ParticleDataset(good.images, good.quaternions, pixel_size=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        particles.ParticleDataset(good.images * np.nan, good.quaternions)


def test_subset():
    dataset = make_dataset(count=6)
    part = dataset.subset([4, 1])
    assert len(part) == 2
    np.testing.assert_array_equal(part.images, dataset.images[[4, 1]])
    np.testing.assert_array_equal(part.ctf.defocus_u, dataset.ctf.defocus_u[[4, 1]])


def test_images_follow_their_names(tmp_path):
    dataset = make_dataset(count=4, with_ctf=False)
    folder = particles.write_dataset(dataset, tmp_path / "data")
    star = starfile.read(folder / "particles.star", always_dict=True)
    star["particles"] = star["particles"].iloc[[2, 0]]
    starfile.write(star, folder / "particles.star")
    back = particles.read_dataset(folder)
    np.testing.assert_array_equal(back.images, dataset.images[[2, 0]])


def test_pose_files(tmp_path):
    q = random_quaternions(20, rng=3)
    path = star.write_poses(tmp_path / "poses.star", q)
    assert_same_rotations(star.read_poses(path), q)
    # A dataset's particles.star is a pose file too.
    dataset = make_dataset()
    folder = particles.write_dataset(dataset, tmp_path / "data")
    assert_same_rotations(star.read_poses(folder / "particles.star"), dataset.quaternions)


def test_read_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        particles.read_dataset(tmp_path / "absent")
    folder = particles.write_dataset(make_dataset(with_ctf=False), tmp_path / "data")
    (folder / "particles.mrcs").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        particles.read_dataset(folder)

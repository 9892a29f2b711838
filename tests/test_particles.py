"""Datasets on disk: .mrcs + RELION .star, atomic writes, pose files."""

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryoposes import particles, star
from cryoposes.ctf import CTFParameters
from cryoposes.errors import InputError
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
    with pytest.raises(FileNotFoundError, match="row 1 names the stack particles.mrcs"):
        particles.read_dataset(folder)


def write_stack(path, images):
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path) as stack:
        stack.set_data(np.asarray(images, dtype=np.float32))
        stack.set_image_stack()


@pytest.fixture
def relion_project(tmp_path):
    """A RELION project: 3 stacks under Extract/job012/Movies/, 2 optics groups (other voltages,
    Cs and amplitude contrast), particles in shuffled rows with extra columns and no poses, the
    STAR file in Select/job020/ with names relative to the project folder."""
    rng = np.random.default_rng(5)
    images = rng.standard_normal((9, 16, 16)).astype(np.float32)
    stacks = ["Extract/job012/Movies/a.mrcs", "Extract/job012/Movies/b.mrcs", "Extract/job012/Movies/c.mrcs"]
    for k, name in enumerate(stacks):
        write_stack(tmp_path / name, images[3 * k:3 * k + 3])
    names = [f"{i % 3 + 1:06d}@{stacks[i // 3]}" for i in range(9)]
    order = rng.permutation(9)
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnOpticsGroupName": ["g1", "g2"],
                           "rlnImagePixelSize": [1.5, 1.5], "rlnImageSize": [16, 16], "rlnImageDimensionality": [2, 2],
                           "rlnVoltage": [300.0, 200.0], "rlnSphericalAberration": [2.7, 2.0],
                           "rlnAmplitudeContrast": [0.1, 0.07]})
    groups = np.array([1, 1, 1, 2, 2, 2, 2, 1, 1])
    table = pd.DataFrame({"rlnCoordinateX": rng.uniform(0, 4000, 9), "rlnImageName": names,
                          "rlnDefocusU": rng.uniform(1e4, 2e4, 9), "rlnDefocusV": rng.uniform(1e4, 2e4, 9),
                          "rlnDefocusAngle": rng.uniform(0, 180, 9), "rlnOpticsGroup": groups,
                          "rlnMicrographName": [f"MotionCorr/job002/m{i}.mrc" for i in range(9)]}).iloc[order]
    star_path = tmp_path / "Select/job020/particles.star"
    star_path.parent.mkdir(parents=True)
    starfile.write({"optics": optics, "particles": table.reset_index(drop=True)}, star_path)
    return star_path, images[order], table.reset_index(drop=True), groups[order]


def test_a_relion_project_star_with_stacks_groups_and_no_poses(relion_project):
    star_path, images, table, groups = relion_project
    dataset = particles.read_dataset(star_path)
    np.testing.assert_array_equal(dataset.images, images)  # each row its own image, in the file's order
    assert not dataset.has_poses and dataset.quaternions is None
    assert dataset.pixel_size == 1.5 and dataset.image_names == list(table["rlnImageName"])
    voltage = dataset.ctf.per_particle(len(dataset))["voltage"]
    np.testing.assert_array_equal(voltage, np.where(groups == 1, 300.0, 200.0))
    assert list(dataset.table.columns) == list(table.columns) and len(dataset.optics) == 2
    subset = dataset.subset([4, 1])
    assert subset.table["rlnImageName"].tolist() == [dataset.image_names[4], dataset.image_names[1]]


def test_bad_relion_files_name_the_file_and_row(relion_project, tmp_path):
    star_path, _, table, _ = relion_project
    blocks = starfile.read(star_path, always_dict=True)
    project = star_path.parents[2]

    def written(particles_table, name, optics=blocks["optics"]):
        path = project / "Select/job020" / name
        starfile.write({"optics": optics, "particles": particles_table}, path)
        return path

    past = table.copy()
    past.loc[3, "rlnImageName"] = "000004@Extract/job012/Movies/b.mrcs"
    with pytest.raises(InputError, match="row 4 asks for image 4 of .*b.mrcs, which holds 3"):
        particles.read_dataset(written(past, "past.star"))
    missing = table.copy()
    missing.loc[6, "rlnImageName"] = "000001@Extract/job012/Movies/gone.mrcs"
    with pytest.raises(FileNotFoundError, match="row 7 names the stack Extract/job012/Movies/gone.mrcs"):
        particles.read_dataset(written(missing, "missing.star"))
    with pytest.raises(InputError, match="empty"):
        particles.read_dataset(written(table.iloc[:0], "empty.star"))
    other_group = table.copy()
    other_group.loc[2, "rlnOpticsGroup"] = 7
    with pytest.raises(InputError, match="row 3 names optics group 7"):
        particles.read_dataset(written(other_group, "group.star"))
    sizes = blocks["optics"].copy()
    sizes.loc[1, "rlnImagePixelSize"] = 2.0
    with pytest.raises(InputError, match="different pixel sizes"):
        particles.read_dataset(written(table, "sizes.star", sizes))
    write_stack(project / "Extract/job012/Movies/big.mrcs", np.zeros((2, 20, 20)))
    big = table.copy()
    big.loc[0, "rlnImageName"] = "000001@Extract/job012/Movies/big.mrcs"
    with pytest.raises(InputError, match="20×20 px"):
        particles.read_dataset(written(big, "big.star"))
    (project / "Extract/job012/Movies/corrupt.mrcs").write_bytes(b"not an MRC file at all" * 50)
    corrupt = table.copy()
    corrupt.loc[0, "rlnImageName"] = "000001@Extract/job012/Movies/corrupt.mrcs"
    with pytest.raises(InputError, match="corrupt.mrcs: not a readable MRC stack"):
        particles.read_dataset(written(corrupt, "corrupt.star"))


def test_an_old_single_table_star_with_detector_pixel_size(tmp_path):
    """RELION 3.0 and cryoSPARC's exports: one table, pixel size from detector and magnification."""
    images = np.random.default_rng(1).standard_normal((4, 16, 16)).astype(np.float32)
    write_stack(tmp_path / "J12/imported/stack.mrc", images)
    star_path = tmp_path / "exported.star"
    starfile.write(pd.DataFrame({"rlnImageName": [f"{i:06d}@J12/imported/stack.mrc" for i in (4, 1)],
                                 "rlnDetectorPixelSize": [5.0, 5.0], "rlnMagnification": [50000.0, 50000.0],
                                 "rlnAngleRot": [10.0, 20.0], "rlnAngleTilt": [30.0, 40.0],
                                 "rlnAnglePsi": [50.0, 60.0]}), star_path)
    dataset = particles.read_dataset(star_path)
    np.testing.assert_array_equal(dataset.images, images[[3, 0]])
    assert dataset.pixel_size == pytest.approx(1.0) and dataset.has_poses and dataset.ctf is None


def test_write_relion_project_round_trips_images_and_ctf_by_name(tmp_path):
    dataset = make_dataset(count=7, with_ctf=True)
    star_path, names = particles.write_relion_project(dataset, tmp_path / "project", stacks=3, optics_groups=2, seed=1)
    back = particles.read_dataset(star_path)
    assert not back.has_poses and len(back.optics) == 2 and len({n.split("@")[1] for n in back.image_names}) == 3
    # Rows are shuffled; each particle's name brings back its image, CTF and shift.
    original = [names.index(name) for name in back.image_names]
    assert sorted(original) == list(range(7)) and original != list(range(7))
    np.testing.assert_array_equal(back.images, dataset.images[original])
    defocus = dataset.ctf.per_particle(7)["defocus_u"]
    np.testing.assert_allclose(back.ctf.per_particle(7)["defocus_u"], defocus[original], rtol=1e-6)
    np.testing.assert_allclose(back.shifts, dataset.shifts[original], atol=1e-6)
    with pytest.raises(InputError, match="not empty"):
        particles.write_relion_project(dataset, tmp_path / "project")


def test_optics_groups_of_different_pixel_sizes_are_brought_to_one(tmp_path):
    # The same Gaussian particle (σ = 6 Å, centred 6 Å right of the box centre) imaged at 2 Å in
    # optics group 1 and at 3 Å in group 2: brought to 2 Å, both images must agree.
    size = 33
    axis = np.arange(size) - size // 2

    def particle(pixel):
        x, y = np.meshgrid(axis * pixel, axis * pixel)
        return np.exp(-((x - 6.0) ** 2 + y ** 2) / (2 * 6.0 ** 2))

    write_stack(tmp_path / "a.mrcs", np.stack([particle(2.0), particle(3.0)]))
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnOpticsGroupName": ["one", "two"],
                           "rlnImagePixelSize": [2.0, 3.0], "rlnImageSize": [size, size], "rlnImageDimensionality": [2, 2]})
    table = pd.DataFrame({"rlnImageName": ["000001@a.mrcs", "000002@a.mrcs"], "rlnOpticsGroup": [1, 2],
                          "rlnOriginXAngst": [0.0, 3.0], "rlnOriginYAngst": [0.0, 0.0]})
    star_path = tmp_path / "particles.star"
    starfile.write({"optics": optics, "particles": table}, star_path)
    with pytest.raises(InputError, match=r"different pixel sizes \(2, 3 Å\).*--pixel-size"):
        particles.read_dataset(star_path)
    dataset = particles.read_dataset(star_path, pixel_size=2.0)
    assert dataset.pixel_size == 2.0 and dataset.images.shape == (2, size, size)
    np.testing.assert_allclose(dataset.images[1], dataset.images[0], atol=0.02)
    np.testing.assert_allclose(dataset.shifts[:, 0], [0.0, -1.5])  # −origin / the new pixel size
    with pytest.raises(InputError, match="positive number of Å"):
        particles.read_dataset(star_path, pixel_size=-1.0)

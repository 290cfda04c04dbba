"""The equivariant potential: every DESIGN.md §5 check in float64 and float32,
equivariance of each block under rotations and reflections, model files and
presets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from e3nn.util.test import assert_equivariant

from mlipkit import testing
from mlipkit.data import from_atoms
from mlipkit.models import ScaleShift, SumPotential
from mlipkit.models.checkpoint import load, save
from mlipkit.models.equivariant import (
    PRESETS,
    Convolution,
    Equivariant,
    ProductBasis,
    RadialBasis,
    Update,
    from_flat,
    irreps,
    natural,
    to_flat,
)
from mlipkit.physics import ZBL
from tests.conftest import CU_REF, ETHANOL_REFS, ethanol_frames, triclinic_cu

TINY = dict(channels=8, l_max=1, sh_lmax=2, n_layers=2, correlation=3, n_bessel=6,
            radial_hidden=[16])


def _potential(species, refs, dtype, seed=0, **settings):
    torch.manual_seed(seed)
    net = Equivariant(species, cutoff=4.0, **{**TINY, **settings})
    return SumPotential(ScaleShift(net, scale=0.5, shift=refs), ZBL()).to(dtype)


@pytest.fixture(scope="module", params=[torch.float64, torch.float32], ids=["f64", "f32"])
def potentials(request):
    return (_potential(["H", "C", "O"], ETHANOL_REFS, request.param),
            _potential(["Cu"], CU_REF, request.param))


def test_forces_and_stress_match_finite_differences(potentials):
    molecule_pot, bulk_pot = potentials
    testing.assert_forces_match_fd(molecule_pot, ethanol_frames()[0])
    testing.assert_forces_match_fd(bulk_pot, triclinic_cu())
    testing.assert_stress_matches_fd(bulk_pot, triclinic_cu())


def test_invariance_smoothness_and_extensivity(potentials):
    molecule_pot, bulk_pot = potentials
    testing.assert_invariance(molecule_pot, ethanol_frames()[1])
    testing.assert_invariance(bulk_pot, triclinic_cu())
    for pair in (["C", "O"], ["H", "H"]):
        testing.assert_smooth_cutoff(molecule_pot, pair)
    testing.assert_smooth_cutoff(bulk_pot, ["Cu", "Cu"])
    testing.assert_extensive(molecule_pot, *ethanol_frames()[:2])
    for symbol, ref in ETHANOL_REFS.items():
        testing.assert_isolated_atom(molecule_pot, symbol, ref)


def test_small_cells_batches_and_calculator(potentials):
    molecule_pot, bulk_pot = potentials
    testing.assert_supercell_consistent(bulk_pot, triclinic_cu())
    testing.assert_supercell_consistent(bulk_pot, triclinic_cu(repeat=(1, 1, 1)))
    testing.assert_batch_consistent(molecule_pot, ethanol_frames()[:3] + [molecule("H2O")])
    testing.assert_calculator_consistent(molecule_pot, ethanol_frames()[2])
    testing.assert_calculator_consistent(bulk_pot, triclinic_cu())


def test_mirror_image_has_the_same_energy_and_mirrored_forces():
    """Reflections are in E(3): a chiral-looking frame and its mirror image agree."""
    pot = _potential(["H", "C", "O"], ETHANOL_REFS, torch.float64)
    atoms = ethanol_frames()[3]
    mirror = atoms.copy()
    mirror.positions[:, 0] *= -1
    e, f, _ = testing.evaluate(pot, atoms)
    e_m, f_m, _ = testing.evaluate(pot, mirror)
    assert abs(e - e_m) < 1e-10
    np.testing.assert_allclose(f_m, f * np.array([-1, 1, 1]), atol=1e-10)
    assert np.abs(f).max() > 1e-3  # not trivially zero


def _edges(n_atoms=6, n_edges=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    receiver = torch.randint(0, n_atoms, (n_edges,), generator=g)
    sender = torch.randint(0, n_atoms, (n_edges,), generator=g)
    r = 1.0 + 2.5 * torch.rand(n_edges, generator=g, dtype=torch.float64)
    return receiver, sender, r


def _assert_equivariant(f, channels_in: list[dict], channels_out: dict, rows: list[int]):
    """e3nn's check (random rotations and reflections, float64) on ``f`` taking
    and giving feature dicts, through the flat layout."""
    args = [irreps(c).randn(n, -1, dtype=torch.float64) for c, n in zip(channels_in, rows)]

    def flat(*xs):
        return to_flat(f(*[from_flat(x, c) for x, c in zip(xs, channels_in)]), channels_out)

    assert flat(*args).abs().max() > 1e-3  # not trivially zero
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn draws its rotations in the default dtype
    try:
        assert_equivariant(flat, args_in=args, irreps_in=[irreps(c) for c in channels_in],
                           irreps_out=irreps(channels_out), tolerance=1e-12)
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("l_in", [0, 1, 2])
def test_convolution_is_equivariant(l_in):
    channels_in = {key: 8 for key in natural(l_in)}
    conv = Convolution(channels_in, 2, 8, [6, 16], avg_neighbors=3.0).double()
    receiver, sender, r = _edges()
    radial = RadialBasis(4.0, 6)(r)
    assert conv.irreps_out == {key: 8 for key in natural(2)}
    sh_channels = {key: 1 for key in natural(2)}

    def f(h, sh):
        return conv(h, to_flat(sh, sh_channels), radial, receiver, sender)

    _assert_equivariant(f, [channels_in, sh_channels], conv.irreps_out, rows=[6, 20])


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_product_basis_and_update_are_equivariant(correlation):
    channels_a = {key: 8 for key in natural(2)}
    target = natural(1)
    channels_h = {key: 8 for key in target}
    product = ProductBasis(channels_a, target, 2, correlation).double()
    update = Update(product.irreps_out, channels_h, target, 8).double()
    species = torch.tensor([0, 1, 1, 0, 1])
    assert set(product.irreps_out) == set(target)

    def f(a, h):
        return update(product(a, species), h)

    _assert_equivariant(f, [channels_a, channels_h], update.irreps_out, rows=[5, 5])


def test_product_basis_reaches_the_requested_body_order():
    """Scaling A by s scales the order-ν products by s^ν: the blocks are
    genuine products, not copies."""
    channels_a = {key: 4 for key in natural(1)}
    product = ProductBasis(channels_a, [(0, 1)], 1, 3).double()
    a = from_flat(irreps(channels_a).randn(3, -1, dtype=torch.float64), channels_a)
    species = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        ratio = (product({k: 2.0 * x for k, x in a.items()}, species)[(0, 1)]
                 / product(a, species)[(0, 1)])
    widths = [4 * groups.get((0, 1), 0) for groups in product.groups]
    assert len(widths) == 3 and all(w > 0 for w in widths) and sum(widths) == ratio.shape[1]
    out = product(a, species)[(0, 1)].detach()
    assert (out.abs().amax(dim=(0, 2)) > 1e-8).all()  # no coupling path that is always zero
    expected = np.concatenate([np.full(w, 2.0**order) for order, w in enumerate(widths, 1)])
    np.testing.assert_allclose(ratio[..., 0].numpy(), np.broadcast_to(expected, (3, len(expected))),
                               rtol=1e-10)


def test_float32_round_trip_keeps_float64_constants():
    """Parameters pass through float32, the coupling coefficients do not: the
    model is still invariant to float64 precision."""
    again = _potential(["H", "C", "O"], ETHANOL_REFS, torch.float64).float().double()
    testing.assert_invariance(again, ethanol_frames()[0])


def test_angles_reach_the_energy():
    """A–B–A with fixed bond lengths and the A–A distance beyond the cutoff:
    a model of pair distances alone could not tell the angles apart."""
    pot = _potential(["H", "C", "O"], ETHANOL_REFS, torch.float64)
    energies = []
    for angle in (140.0, 160.0, 180.0):
        t = np.radians(angle / 2)
        atoms = Atoms("HOH", positions=[[-2.2 * np.sin(t), 2.2 * np.cos(t), 0], [0, 0, 0],
                                        [2.2 * np.sin(t), 2.2 * np.cos(t), 0]])
        assert atoms.get_distance(0, 2) > 4.0  # H–H beyond the 4 Å cutoff
        energies.append(testing.evaluate(pot, atoms)[0])
    # an untrained network's energy is ~1e-3 eV here; float64 round-off on ~2e3 eV is 5e-13
    assert np.ptp(energies) > 1e-9, energies


@pytest.mark.parametrize("preset", ["medium", "large"])
def test_larger_presets_are_invariant(preset):
    """The l = 2 features and l = 3 harmonics of the larger presets (narrowed to 4 channels)."""
    torch.manual_seed(0)
    net = Equivariant(["H", "C", "O"], cutoff=4.0, **{**PRESETS[preset], "channels": 4})
    pot = SumPotential(ScaleShift(net, scale=0.5, shift=ETHANOL_REFS), ZBL()).double()
    testing.assert_invariance(pot, ethanol_frames()[1])
    testing.assert_forces_match_fd(pot, ethanol_frames()[1])


def test_training_builds_the_preset_with_the_mean_neighbour_count():
    from mlipkit.neighbors import attach_neighbors
    from mlipkit.training.config import ModelConfig
    from mlipkit.training.setup import equivariant_network

    frames = [attach_neighbors(from_atoms(a), 4.0) for a in ethanol_frames()[:2]]
    config = ModelConfig(type="equivariant", cutoff=4.0, channels=8)
    net = equivariant_network(config, [1, 6, 8], frames)
    pairs = sum(int(((d > 0) & (d < 4.0)).sum()) for d in
                (a.get_all_distances() for a in ethanol_frames()[:2]))
    assert net.settings["avg_neighbors"] == pytest.approx(pairs / 18)  # 2 frames of 9 atoms
    assert net.settings["channels"] == 8 and net.settings["l_max"] == PRESETS["small"]["l_max"]
    rebuilt = Equivariant(**{k: v for k, v in net.config().items() if k != "type"})
    assert rebuilt.settings == net.settings


def test_model_file_round_trip(tmp_path):
    pot = _potential(["Cu"], CU_REF, torch.float64, seed=3)
    save(pot, tmp_path / "model.safetensors")
    loaded = load(tmp_path / "model.safetensors")
    batch = from_atoms(bulk("Cu", "fcc", a=3.6) * (2, 2, 2))
    a, b = pot(batch, stress=True), loaded(batch, stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_presets_build_and_grow():
    sizes = []
    for name in ("small", "medium", "large"):
        net = Equivariant(["H", "C"], **PRESETS[name])
        sizes.append(sum(p.numel() for p in net.parameters()))
    assert sizes[0] < sizes[1] < sizes[2]


def test_config_knows_the_presets():
    from mlipkit.training import config

    assert config.PRESETS == tuple(PRESETS)


def test_training_reports_impossible_settings_as_config_errors():
    from mlipkit.errors import InvalidConfig
    from mlipkit.training.config import ModelConfig
    from mlipkit.training.setup import equivariant_network

    with pytest.raises(InvalidConfig, match="l_max"):
        equivariant_network(ModelConfig(type="equivariant", l_max=3), [1], [])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="cutoff"):
        Equivariant(["H"], cutoff=0.0)
    with pytest.raises(ValueError, match="correlation"):
        Equivariant(["H"], correlation=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu_with_stress_and_hessian():
    pot = _potential(["Cu"], CU_REF, torch.float64, **PRESETS["large"])
    atoms = triclinic_cu()
    cpu = pot(from_atoms(atoms), stress=True, hessian=True)
    gpu = pot.to("cuda")(from_atoms(atoms).to("cuda"), stress=True, hessian=True)
    for key in ("energy", "forces", "stress", "hessian"):
        assert gpu[key].device.type == "cuda"
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-9, atol=1e-9)

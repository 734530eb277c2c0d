"""The QRNN potential: AEV -> (χ, J) -> charge equilibration, twice -> atomic energies + Coulomb + dispersion.

Architecture (docs/model.md has the equations and the choices made where science.md says "not confirmed"):

1. ANI-style AEV ``G`` per atom (:mod:`.aev`).
2. Pass k = 1, 2: one element network per element maps ``G ⊕ G^q(q^(k-1))`` to an electronegativity χ and a
   hardness J = softplus(·) + J_min; :func:`.qeq.charge_equilibration` gives ``q^(k)`` with Σq = Q per system.
   ``q^(0) = 0``, so pass 1 sees the plain AEV. ``G^q`` is the charge-weighted radial AEV
   G^q_{i,(s_j,r)} = Σ_j q_j 0.25 exp(-η_R (r_ij - R_r)²) f_c(r_ij), species-resolved like the radial AEV.
3. Energy element networks map ``G ⊕ G^q(q^(2)) ⊕ q^(2)`` to atomic energies; plus a self-energy per element.
4. E = Σ atomic energies + Coulomb(q^(2)) + dispersion (+ its tail in periodic cells) + optional ZBL prior.
   Forces and stress come from autograd (:func:`evaluate`).

Inputs are a flat batch without padding (contract glossary in :mod:`.neighbors`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing as t

import torch
from ase.data import atomic_numbers, chemical_symbols, covalent_radii

from .aev import AEVComputer, AEVConfig
from .neighbors import neighbor_pairs, pair_geometry, sum_over_pairs
from .qeq import charge_equilibration

__all__ = ('QRNN', 'QRNNConfig', 'evaluate')

DEFAULT_COULOMB: dict = {'cutoff': 12.0, 'dsf_alpha': 0.2, 'short_range_cutoff': 4.6}


@dataclasses.dataclass(frozen=True)
class QRNNConfig:
    """Hyper-parameters of a :class:`QRNN`; :meth:`to_dict` is what ``ModelData`` stores as ``config``.

    ``coulomb``, ``dispersion`` and ``repulsion`` are the keyword arguments of :class:`.coulomb.Coulomb`,
    :class:`.dispersion.D3Dispersion` and :class:`.repulsion.ZBLRepulsion`; ``None`` leaves the term out (the ZBL
    prior is off unless asked for, so existing configs give the same numbers). ``open_cluster_cutoff`` is the pair
    cutoff for open clusters (``inf``: all pairs, so the Coulomb energy of a cluster is exact).
    """

    elements: tuple[str, ...] = ('H', 'C', 'O')
    aev: AEVConfig = dataclasses.field(default_factory=AEVConfig)
    charge_hidden: tuple[int, ...] = (128, 96)
    energy_hidden: tuple[int, ...] = (160, 128, 96)
    celu_alpha: float = 0.1
    min_hardness: float = 0.5  # eV/e², lower bound of J, keeps 1/J finite
    coulomb: dict | None = dataclasses.field(default_factory=lambda: dict(DEFAULT_COULOMB))
    dispersion: dict | None = dataclasses.field(default_factory=dict)
    open_cluster_cutoff: float = math.inf  # Å
    repulsion: dict | None = None

    def __post_init__(self) -> None:
        unknown = [symbol for symbol in self.elements if symbol not in atomic_numbers]
        if not self.elements or unknown or len(set(self.elements)) != len(self.elements):
            raise ValueError(f'elements must be distinct chemical symbols, got {list(self.elements)}.')
        if any(size < 1 for size in (*self.charge_hidden, *self.energy_hidden)):
            raise ValueError('hidden layer sizes must be positive integers.')
        if self.min_hardness <= 0:
            raise ValueError(f'min_hardness must be positive, got {self.min_hardness}.')

    def to_dict(self) -> dict:
        """JSON-ready dict (infinite cutoffs as ``None``)."""
        return {
            'elements': list(self.elements), 'aev': self.aev.to_dict(), 'charge_hidden': list(self.charge_hidden),
            'energy_hidden': list(self.energy_hidden), 'celu_alpha': self.celu_alpha,
            'min_hardness': self.min_hardness, 'coulomb': self.coulomb, 'dispersion': self.dispersion,
            'open_cluster_cutoff': None if math.isinf(self.open_cluster_cutoff) else self.open_cluster_cutoff,
            # written only when set, so the files of models without the prior stay as they were
            **({} if self.repulsion is None else {'repulsion': self.repulsion}),
        }

    @classmethod
    def from_dict(cls, values: t.Mapping) -> QRNNConfig:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f'unknown QRNN config key(s) {sorted(unknown)}; known: {sorted(known)}.')
        values = dict(values)
        if 'aev' in values:
            values['aev'] = AEVConfig.from_dict(values['aev'])
        for name in ('elements', 'charge_hidden', 'energy_hidden'):
            if name in values:
                values[name] = tuple(values[name])
        if values.get('open_cluster_cutoff', 0.0) is None:
            values['open_cluster_cutoff'] = math.inf
        return cls(**values)


def _mlp(sizes: list[int], celu_alpha: float) -> torch.nn.Sequential:
    """Linear layers of ``sizes`` with CELU between them (none after the last)."""
    layers: list[torch.nn.Module] = []
    for index, (size_in, size_out) in enumerate(itertools.pairwise(sizes)):
        if index:
            layers.append(torch.nn.CELU(celu_alpha))
        layers.append(torch.nn.Linear(size_in, size_out))
    return torch.nn.Sequential(*layers)


class ElementNetworks(torch.nn.Module):
    """One MLP per element; the only Python loop is over elements (TorchANI's ``ANIModel`` pattern)."""

    def __init__(self, n_species: int, sizes: list[int], celu_alpha: float) -> None:
        super().__init__()
        self.n_out = sizes[-1]
        self.networks = torch.nn.ModuleList([_mlp(sizes, celu_alpha) for _ in range(n_species)])

    def forward(self, features: torch.Tensor, atoms_of_species: list[torch.Tensor]) -> torch.Tensor:
        """(atoms, features) and one index tensor per species -> (atoms, n_out)."""
        out = features.new_zeros((features.shape[0], self.n_out))
        for species, network in enumerate(self.networks):
            index = atoms_of_species[species]  # (atoms of this species,)
            out.index_copy_(0, index, network(features.index_select(0, index)))
        return out


class QRNN(torch.nn.Module):
    """Charge-recursive neural-network potential; ``forward`` gives energies and charges from a pair list.

    ``forward(positions (atoms, 3), numbers (atoms,), system_index (atoms,), cells (systems, 3, 3),
    total_charge (systems,), pairs (2, P), cell_shifts (P, 3), n_systems, periodic)`` returns a dict with
    ``energy`` (systems,), ``energy_atomic``, ``energy_coulomb``, ``energy_dispersion``, ``energy_repulsion``
    (systems,), ``charges``
    (atoms,), ``atomic_energies`` (atoms,) network + self energies, ``dipole`` (systems, 3) = Σ q_i r_i
    (meaningful for open clusters). Use :func:`evaluate` for
    forces and stress. TorchScript-compatible (``torch.jit.script(model)``) when its Coulomb and dispersion are.
    """

    def __init__(self, config: QRNNConfig | None = None) -> None:
        super().__init__()
        config = config or QRNNConfig()
        self.config = config
        n_species = len(config.elements)
        self.n_species = n_species
        species_of_number = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
        for species, symbol in enumerate(config.elements):
            species_of_number[atomic_numbers[symbol]] = species
        self.register_buffer('species_of_number', species_of_number)  # (118+1,) -> species or -1
        self.aev = AEVComputer(n_species, config.aev)
        charge_aev_length = n_species * self.aev.n_radial
        self.charge_networks = ElementNetworks(
            n_species, [self.aev.aev_length + charge_aev_length, *config.charge_hidden, 2], config.celu_alpha,
        )
        self.energy_networks = ElementNetworks(
            n_species, [self.aev.aev_length + charge_aev_length + 1, *config.energy_hidden, 1], config.celu_alpha,
        )
        self.register_buffer('self_energies', torch.zeros(n_species, dtype=torch.float64))  # eV per element
        self.min_hardness = float(config.min_hardness)
        self.coulomb = None
        self.dispersion = None
        cutoffs = [self.aev.radial_cutoff]
        if config.coulomb is not None:
            from .coulomb import Coulomb

            self.coulomb = Coulomb(**config.coulomb)
            cutoffs.append(float(self.coulomb.cutoff))
        # the short-range Coulomb removal can run over the AEV's radial pairs (see _coulomb_energy)
        self._short_range_in_radial = bool(
            self.coulomb is not None and self.coulomb.short_range_cutoff <= self.aev.radial_cutoff
        )
        if config.dispersion is not None:
            from .dispersion import D3Dispersion

            own_elements = [atomic_numbers[symbol] for symbol in config.elements]
            self.dispersion = D3Dispersion(**{'elements': own_elements, **config.dispersion})
            cutoffs.append(float(self.dispersion.cutoff))
        self.repulsion = None
        if config.repulsion is not None:
            from .repulsion import ZBLRepulsion

            self.repulsion = ZBLRepulsion(**config.repulsion)
            reach = 2 * self.repulsion.outer * max(float(covalent_radii[atomic_numbers[s]]) for s in config.elements)
            if reach >= self.aev.radial_cutoff:  # the prior runs over the AEV's radial pairs
                raise ValueError(f'repulsion outer={self.repulsion.outer} reaches {reach:.2f} Å, beyond the radial '
                                 f'AEV cutoff {self.aev.radial_cutoff} Å.')
        self.periodic_cutoff = float(max(cutoffs))  # Å, pair cutoff for periodic cells
        self.open_cluster_cutoff = float(config.open_cluster_cutoff)  # Å, pair cutoff for open clusters

    def _charge_aev(
        self, radial_terms: torch.Tensor, radial_slots: torch.Tensor, radial_charges: torch.Tensor, n_atoms: int,
    ) -> torch.Tensor:
        """Charge-weighted radial AEV, species-resolved: (atoms, species*rad); ``radial_charges`` (2, P_r)."""
        return self.aev.scatter_radial(
            radial_terms, radial_slots, radial_charges[0], radial_charges[1], n_atoms, self.n_species,
        )

    def _equilibrate(
        self, features: torch.Tensor, atoms_of_species: list[torch.Tensor], total_charge: torch.Tensor,
        system_index: torch.Tensor, n_systems: int,
    ) -> torch.Tensor:
        heads = self.charge_networks(features, atoms_of_species)  # (atoms, 2)
        electronegativity = heads[:, 0]
        hardness = torch.nn.functional.softplus(heads[:, 1]) + self.min_hardness  # (atoms,) eV/e², > 0
        return charge_equilibration(electronegativity, hardness, total_charge, system_index, n_systems)

    def forward(
        self, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor, cells: torch.Tensor,
        total_charge: torch.Tensor, pairs: torch.Tensor, cell_shifts: torch.Tensor, n_systems: int, periodic: bool,
    ) -> dict[str, torch.Tensor]:
        n_atoms = positions.shape[0]
        assert positions.shape == (n_atoms, 3) and numbers.shape == (n_atoms,) and system_index.shape == (n_atoms,)
        assert cells.shape == (n_systems, 3, 3) and total_charge.shape == (n_systems,)
        species = self.species_of_number[numbers]  # (atoms,)
        atoms_of_species = [(species == index).nonzero().squeeze(1) for index in range(self.n_species)]
        _, vectors, distances = pair_geometry(positions, cells, system_index, pairs, cell_shifts)  # shared below
        aev, radial_terms, radial_pairs, radial_slots, radial_distances = self.aev(species, pairs, vectors, distances)
        # q^(0) = 0: pass 1 sees the plain AEV (a zero charge-weighted AEV, not computed)
        charge_aev = aev.new_zeros((n_atoms, self.n_species * self.aev.n_radial))  # (atoms, species*rad)
        charges = positions.new_zeros(n_atoms)
        for charge_pass in range(2):
            if charge_pass > 0:
                radial_charges = charges.index_select(0, radial_pairs.reshape(-1)).view(2, -1)  # (2, P_r)
                charge_aev = self._charge_aev(radial_terms, radial_slots, radial_charges, n_atoms)
            charges = self._equilibrate(
                torch.cat([aev, charge_aev], dim=1), atoms_of_species, total_charge, system_index, n_systems,
            )  # (atoms,)
        radial_charges = charges.index_select(0, radial_pairs.reshape(-1)).view(2, -1)  # (2, P_r), q^(2)
        charge_aev = self._charge_aev(radial_terms, radial_slots, radial_charges, n_atoms)
        energy_features = torch.cat([aev, charge_aev, charges.unsqueeze(1)], dim=1)  # (atoms, aev+species*rad+1)
        atomic = self.energy_networks(energy_features, atoms_of_species).squeeze(1)  # (atoms,)
        atomic = atomic + self.self_energies.to(atomic.dtype)[species]
        energy_atomic = atomic.new_zeros(n_systems).index_add(0, system_index, atomic)  # (systems,)
        energy_coulomb = torch.zeros_like(energy_atomic)
        energy_dispersion = torch.zeros_like(energy_atomic)
        energy_repulsion = torch.zeros_like(energy_atomic)
        if self.coulomb is not None:  # ignores periodic pairs beyond its own cutoff
            energy_coulomb = self._coulomb_energy(
                charges, pairs, distances, radial_charges, radial_pairs, radial_distances, system_index, n_systems,
                periodic, positions, cells,
            )
        dispersion = self.dispersion
        if dispersion is not None:
            energy_dispersion = dispersion(
                numbers, pairs, distances, system_index, n_systems, cells if periodic else None,
            )
        repulsion = self.repulsion
        if repulsion is not None:  # exactly zero beyond 0.8 x covalent radius sums, inside the radial pairs
            energy_repulsion = repulsion(numbers, radial_pairs, radial_distances, system_index, n_systems)
        dipole = positions.new_zeros((n_systems, 3)).index_add(0, system_index, charges.unsqueeze(1) * positions)
        return {
            'energy': energy_atomic + energy_coulomb + energy_dispersion + energy_repulsion,
            'energy_atomic': energy_atomic, 'energy_coulomb': energy_coulomb, 'energy_dispersion': energy_dispersion,
            'energy_repulsion': energy_repulsion, 'charges': charges,
            'atomic_energies': atomic, 'dipole': dipole,
        }

    def _coulomb_energy(
        self, charges: torch.Tensor, pairs: torch.Tensor, distances: torch.Tensor, radial_charges: torch.Tensor,
        radial_pairs: torch.Tensor, radial_distances: torch.Tensor, system_index: torch.Tensor, n_systems: int,
        periodic: bool, positions: torch.Tensor, cells: torch.Tensor,
    ) -> torch.Tensor:
        """:class:`.coulomb.Coulomb` energy (systems,), its short-range removal over the AEV's radial pairs only.

        f_sr(r) is exactly zero from ``short_range_cutoff`` on, so when that is inside the radial AEV cutoff the
        removal needs only the radial pairs, whose distances and charges are gathered already; the same sum as
        ``Coulomb.forward`` over the whole list (tested).
        """
        coulomb = self.coulomb
        assert coulomb is not None
        pair_charges = charges.index_select(0, pairs.reshape(-1)).view(2, -1)  # (2, P)
        r, kernel = coulomb.long_range_kernel(distances, periodic)  # (P,), (P,)
        if coulomb.short_range_cutoff > 0 and not self._short_range_in_radial:
            kernel = kernel - coulomb.short_range_kernel(r)
        pair_energy = pair_charges[0] * pair_charges[1] * kernel  # (P,) e²/Å
        if coulomb.short_range_cutoff > 0 and self._short_range_in_radial:
            removed = radial_charges[0] * radial_charges[1] * coulomb.short_range_kernel(radial_distances)  # (P_r,)
            energy = (sum_over_pairs(pair_energy, pairs, system_index, n_systems)
                      - sum_over_pairs(removed, radial_pairs, system_index, n_systems))
        else:
            energy = sum_over_pairs(pair_energy, pairs, system_index, n_systems)
        energy = coulomb.coulomb_constant * energy  # (systems,) eV
        if periodic:
            energy = energy + coulomb.periodic_energy(charges, positions, cells, system_index, n_systems)
        return energy


def evaluate(
    model: torch.nn.Module, positions: torch.Tensor, numbers: torch.Tensor, system_index: torch.Tensor,
    cells: torch.Tensor, pbc: torch.Tensor, total_charge: torch.Tensor, *, compute_forces: bool = True,
    compute_stress: bool = False, create_graph: bool = False, pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Energies, charges, dipoles and, on request, forces (atoms, 3) and stress (systems, 3, 3) in eV/Å³.

    ``model`` is a :class:`QRNN` or its TorchScript version. Stress is (1/V) ∂E/∂ε for a homogeneous strain ε of
    positions and cells (ASE's sign convention), zero for open clusters. ``create_graph`` keeps the graph for
    force training. ``pairs`` (pair indices, integer cell shifts) skips the neighbour search, e.g. for MD with a
    cached list. A batch is all periodic or all open (the Coulomb form differs).
    """
    n_systems = cells.shape[0]
    periodic_systems = pbc.any(dim=1)  # (systems,)
    periodic = bool(periodic_systems.any())
    if periodic and not bool(periodic_systems.all()):
        raise ValueError('a batch must be all periodic or all open clusters; split it by pbc.')
    if pairs is None:
        cutoff = model.periodic_cutoff if periodic else model.open_cluster_cutoff
        pair_index, cell_shifts = neighbor_pairs(positions, system_index, cells, pbc, cutoff)
    else:
        pair_index, cell_shifts = pairs
    species = model.species_of_number[numbers]  # (atoms,)
    if bool((species < 0).any()):
        unknown = sorted({chemical_symbols[number] for number in numbers[species < 0].tolist()})
        known = [chemical_symbols[number] for number in (model.species_of_number >= 0).nonzero().squeeze(1).tolist()]
        raise ValueError(f'elements {unknown} are not in this model (it knows {known}).')
    if (compute_forces or compute_stress) and not positions.requires_grad:
        positions = positions.detach().requires_grad_(True)
    inputs = [positions]
    strained_positions, strained_cells = positions, cells
    strain = None
    if compute_stress:
        strain = torch.zeros((n_systems, 3, 3), dtype=positions.dtype, device=positions.device, requires_grad=True)
        deformation = torch.eye(3, dtype=positions.dtype, device=positions.device) + strain  # (systems, 3, 3)
        strained_positions = torch.bmm(positions.unsqueeze(1), deformation[system_index]).squeeze(1)  # (atoms, 3)
        strained_cells = torch.bmm(cells, deformation)  # (systems, 3, 3)
        inputs.append(strain)
    results = model(
        strained_positions, numbers, system_index, strained_cells, total_charge, pair_index, cell_shifts, n_systems,
        periodic,
    )
    if compute_forces or compute_stress:
        gradients = torch.autograd.grad(
            results['energy'].sum(), inputs, create_graph=create_graph, allow_unused=True,
        )
        if compute_forces:
            gradient = gradients[0]
            results['forces'] = -gradient if gradient is not None else torch.zeros_like(positions)
        if compute_stress and strain is not None:
            gradient = gradients[-1]
            volume = torch.linalg.det(cells).abs()  # (systems,)
            volume = torch.where(periodic_systems, volume, torch.ones_like(volume))
            stress = gradient / volume.view(-1, 1, 1) if gradient is not None else torch.zeros_like(strain)
            results['stress'] = torch.where(periodic_systems.view(-1, 1, 1), stress, torch.zeros_like(stress))
    return results

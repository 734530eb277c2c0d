"""ANI-style atomic environment vectors (radial + angular symmetry functions), species-resolved, from a half list.

Formulas (science.md §1.2, TorchANI ``aev/_terms.py``):

    G^R_{i,(s_j, r)} = Σ_j 0.25 exp(-η_R (r_ij - R_r)²) f_c(r_ij; R_c^R)
    G^A_{i,(s_j s_k, a, z)} = Σ_{j<k} 2 [(1 + cos(θ_ijk - θ_z))/2]^ζ exp(-η_A ((r_ij + r_ik)/2 - R_a)²)
                               f_c(r_ij; R_c^A) f_c(r_ik; R_c^A),   cos θ_ijk scaled by 0.95

with the cosine cutoff f_c(r) = 0.5 cos(π r / R_c) + 0.5. The 0.95 keeps arccos away from ±1 (NeuroChem
convention); here cos(θ - θ_z) is expanded as cos θ cos θ_z + sin θ sin θ_z, which is the same function
without evaluating arccos. Defaults are the ANI-2x constants.
"""

from __future__ import annotations

import dataclasses
import math

import torch

__all__ = ('AEVComputer', 'AEVConfig', 'build_triplets')


def _linspace_without_end(start: float, stop: float, count: int) -> list[float]:
    """``count`` values from ``start`` in equal steps towards ``stop`` (excluded), as TorchANI's ``like_2x``."""
    step = (stop - start) / count
    return [start + step * index for index in range(count)]


@dataclasses.dataclass(frozen=True)
class AEVConfig:
    """AEV hyper-parameters; defaults are ANI-2x (``rHCNOSFCl-5.1R_16-3.5A_a8-4.params``)."""

    radial_cutoff: float = 5.1  # Å
    angular_cutoff: float = 3.5  # Å
    radial_eta: float = 19.7  # Å^-2
    radial_shifts: tuple[float, ...] = tuple(_linspace_without_end(0.8, 5.1, 16))  # Å
    angular_eta: float = 12.5  # Å^-2
    angular_zeta: float = 14.1
    angular_shifts: tuple[float, ...] = tuple(_linspace_without_end(0.8, 3.5, 8))  # Å
    angle_sections: tuple[float, ...] = tuple(math.pi / 8 + index * math.pi / 4 for index in range(4))  # rad

    def to_dict(self) -> dict:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> AEVConfig:
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f'unknown AEV parameter(s) {sorted(unknown)}.')
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})


#: Exponents below this are clamped before ``exp``: float32 ``exp`` of arguments under -87 (results that underflow)
#: is ~10x slower on CPU, and e^-70 = 4e-31 is zero for every Gaussian here.
EXP_FLOOR = -70.0
CPU_TRIPLET_CHUNK = 16384


def cosine_cutoff(distances: torch.Tensor, cutoff: float) -> torch.Tensor:
    """0.5 cos(π r / R_c) + 0.5 inside the cutoff, 0 outside: (pairs,) -> (pairs,)."""
    inside = distances < cutoff
    return torch.where(inside, 0.5 * torch.cos(distances * (math.pi / cutoff)) + 0.5, torch.zeros_like(distances))


def build_triplets(centers: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """All pairs of directed neighbours sharing a centre: (2, triplets) indices into ``centers`` (no gradient).

    ``centers`` (directed pairs,) is the centre atom of each directed pair. Vectorised over atoms: the
    neighbours of each centre are sorted together and combined through one upper-triangle index table.
    """
    device = centers.device
    order = torch.argsort(centers, stable=True)  # (directed,)
    counts = torch.bincount(centers, minlength=n_atoms)  # (atoms,)
    starts = torch.cumsum(counts, 0) - counts  # (atoms,)
    max_neighbors = int(counts.max()) if counts.numel() else 0
    if max_neighbors < 2:
        return torch.zeros((2, 0), dtype=torch.long, device=device)
    upper = torch.triu_indices(max_neighbors, max_neighbors, 1, device=device)  # (2, T)
    valid = upper[1].unsqueeze(0) < counts.unsqueeze(1)  # (atoms, T)
    atom, slot = valid.nonzero().unbind(1)  # (triplets,)
    local = upper.index_select(1, slot) + starts.index_select(0, atom).unsqueeze(0)  # (2, triplets) sorted positions
    return order.index_select(0, local.view(-1)).view(2, -1)  # (2, triplets)


class AEVComputer(torch.nn.Module):
    """Radial and angular AEV for ``n_species`` species from a half pair list.

    ``forward(species (atoms,) in [0, n_species), pairs (2, P), vectors (P, 3), distances (P,))`` returns
    ``(aev (atoms, aev_length), radial_terms (P_r, n_radial), radial_pairs (2, P_r), radial_slots (2, P_r),
    radial_distances (P_r,))``: the pairs inside the radial cutoff with their terms and scatter rows, so that the
    charge-weighted radial AEV and short-range pair terms reuse them instead of searching the list again.
    """

    def __init__(self, n_species: int, config: AEVConfig | None = None) -> None:
        super().__init__()
        config = config or AEVConfig()
        if config.angular_cutoff > config.radial_cutoff:
            raise ValueError(f'angular_cutoff {config.angular_cutoff} Å must not exceed radial_cutoff '
                             f'{config.radial_cutoff} Å.')
        self.n_species = n_species
        # triplets per step of the angular terms on CPU: (chunk, 32) temporaries stay in cache and are reused
        # instead of freshly mapped (~2x faster than one (triplets, 32) tensor at 1 500 atoms); one step on CUDA
        self.cpu_triplet_chunk = CPU_TRIPLET_CHUNK
        self.exp_floor = EXP_FLOOR
        self.radial_cutoff = float(config.radial_cutoff)
        self.angular_cutoff = float(config.angular_cutoff)
        self.radial_eta = float(config.radial_eta)
        self.angular_eta = float(config.angular_eta)
        self.angular_zeta = float(config.angular_zeta)
        self.register_buffer('radial_shifts', torch.tensor(config.radial_shifts, dtype=torch.float64))
        self.register_buffer('angular_shifts', torch.tensor(config.angular_shifts, dtype=torch.float64))
        self.register_buffer('angle_sections', torch.tensor(config.angle_sections, dtype=torch.float64))
        n_shifts, n_sections = len(config.angular_shifts), len(config.angle_sections)
        # column a * n_sections + z of an angular term takes shift a and section z
        self.register_buffer('shift_expansion', torch.eye(n_shifts, dtype=torch.float64).repeat_interleave(
            n_sections, dim=1), persistent=False)  # (shifts, shifts*sections)
        self.register_buffer('section_expansion', torch.eye(n_sections, dtype=torch.float64).repeat(1, n_shifts),
                             persistent=False)  # (sections, shifts*sections)
        self.n_radial = len(config.radial_shifts)
        self.n_angular = len(config.angular_shifts) * len(config.angle_sections)
        self.n_species_pairs = n_species * (n_species + 1) // 2
        pair_slot = torch.zeros((n_species, n_species), dtype=torch.long)
        upper = torch.triu_indices(n_species, n_species)
        pair_slot[upper[0], upper[1]] = torch.arange(upper.shape[1])
        pair_slot[upper[1], upper[0]] = torch.arange(upper.shape[1])
        self.register_buffer('species_pair_slot', pair_slot)  # (species, species) -> unordered pair index
        self.radial_length = n_species * self.n_radial
        self.angular_length = self.n_species_pairs * self.n_angular
        self.aev_length = self.radial_length + self.angular_length

    def radial_terms(self, distances: torch.Tensor) -> torch.Tensor:
        """0.25 exp(-η (r - R_s)²) f_c(r): (pairs,) -> (pairs, n_radial)."""
        shifts = self.radial_shifts.to(distances.dtype)
        offsets = distances.unsqueeze(1) - shifts  # (pairs, rad)
        exponents = (-self.radial_eta * offsets * offsets).clamp(min=self.exp_floor)  # (pairs, rad); x*x: no pow
        gaussians = torch.exp(exponents)  # (pairs, rad)
        return gaussians * (0.25 * cosine_cutoff(distances, self.radial_cutoff)).unsqueeze(1)  # (pairs, rad)

    def scatter_radial(
        self, terms: torch.Tensor, slots: torch.Tensor, weight_of_i: torch.Tensor | None,
        weight_of_j: torch.Tensor | None, n_atoms: int, n_slots: int,
    ) -> torch.Tensor:
        """Add ``terms`` (P, rad) to both ends of each pair in the neighbour's slot: (atoms, slots*rad).

        ``slots`` (2, P) are the flat rows ``i * n_slots + slot_of_j`` and ``j * n_slots + slot_of_i``; the
        weights (P,) multiply the terms added to i (``weight_of_j``) and to j (``weight_of_i``); None: 1.
        """
        out = terms.new_zeros((n_atoms * n_slots, self.n_radial))  # (atoms*slots, rad)
        out.index_add_(0, slots[0], terms if weight_of_j is None else terms * weight_of_j.unsqueeze(1))
        out.index_add_(0, slots[1], terms if weight_of_i is None else terms * weight_of_i.unsqueeze(1))
        return out.view(n_atoms, n_slots * self.n_radial)

    def forward(
        self, species: torch.Tensor, pairs: torch.Tensor, vectors: torch.Tensor, distances: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """See the class docstring; every pair quantity is gathered once, radial pairs first, angular from them."""
        n_atoms = species.shape[0]
        assert pairs.shape[0] == 2 and vectors.shape == (pairs.shape[1], 3) and distances.shape == (pairs.shape[1],)
        # Radial part over the pairs inside the radial cutoff.
        radial_index = (distances < self.radial_cutoff).nonzero().squeeze(1)  # (P_r,)
        radial_pairs = pairs.index_select(1, radial_index)  # (2, P_r)
        radial_distances = distances.index_select(0, radial_index)  # (P_r,)
        terms = self.radial_terms(radial_distances)  # (P_r, rad)
        pair_species = species.index_select(0, radial_pairs.view(-1)).view(2, -1)  # (2, P_r)
        slots = radial_pairs * self.n_species + pair_species.flip(0)  # (2, P_r): i's row for j, j's row for i
        radial = self.scatter_radial(terms, slots, None, None, n_atoms, self.n_species)  # (atoms, species*rad)
        # Angular part: directed pairs inside the angular cutoff, combined two by two around each centre.
        angular_local = (radial_distances < self.angular_cutoff).nonzero().squeeze(1)  # (P_a,) into radial pairs
        angular_pairs = radial_pairs.index_select(1, angular_local)  # (2, P_a)
        angular_distances = radial_distances.index_select(0, angular_local)  # (P_a,)
        units = vectors.index_select(0, radial_index.index_select(0, angular_local)) / angular_distances.unsqueeze(1)
        angular_species = pair_species.index_select(1, angular_local)  # (2, P_a)
        centers = angular_pairs.view(-1)  # (2 P_a,): each pair seen from i, then from j
        other_species = angular_species.flip(0).reshape(-1)  # (2 P_a,)
        scalars = torch.stack([angular_distances, cosine_cutoff(angular_distances, self.angular_cutoff)], 1)
        directed = torch.cat([
            torch.cat([units, scalars], 1), torch.cat([-units, scalars], 1),
        ])  # (2 P_a, 5): unit vector, distance, cutoff of each directed pair, gathered once per triplet side
        first, second = build_triplets(centers, n_atoms).unbind(0)  # (T,), (T,)
        rows = centers.index_select(0, first) * self.n_species_pairs + self.species_pair_slot.view(-1).index_select(
            0, other_species.index_select(0, first) * self.n_species + other_species.index_select(0, second),
        )  # (T,) scatter row: centre and unordered species pair of its two neighbours
        angular_aev = directed.new_zeros((n_atoms * self.n_species_pairs, self.n_angular))
        n_triplets = first.shape[0]
        chunk = n_triplets if directed.device.type == 'cuda' else self.cpu_triplet_chunk
        for start in range(0, n_triplets, max(chunk, 1)):
            side_j = directed.index_select(0, first[start:start + chunk])  # (chunk, 5)
            side_k = directed.index_select(0, second[start:start + chunk])  # (chunk, 5)
            angular = self.angular_terms(
                0.95 * (side_j[:, 0] * side_k[:, 0] + side_j[:, 1] * side_k[:, 1] + side_j[:, 2] * side_k[:, 2]),
                side_j[:, 3] + side_k[:, 3], side_j[:, 4] * side_k[:, 4],
            )  # (chunk, ang)
            angular_aev.index_add_(0, rows[start:start + chunk], angular)
        aev = torch.cat([radial, angular_aev.view(n_atoms, self.angular_length)], dim=1)  # (atoms, aev)
        return aev, terms, radial_pairs, slots, radial_distances

    def angular_terms(
        self, cos_angle: torch.Tensor, distance_sum: torch.Tensor, cutoff_product: torch.Tensor,
    ) -> torch.Tensor:
        """Angular symmetry functions of triplets from 0.95 cos θ, r_ij + r_ik and f_c f_c, all (T,).

        Returns (T, n_shifts * n_sections). The cutoffs and the factor 2^(1-ζ) go into the (T, shifts) factor
        before the outer product (fewer operations on (T, shifts*sections) tensors).
        """
        dtype = cos_angle.dtype
        sin_angle = torch.sqrt(1.0 - cos_angle * cos_angle)  # (T,) >= sqrt(1 - 0.95^2): smooth
        sections = self.angle_sections.to(dtype)
        cos_difference = cos_angle.unsqueeze(1) * torch.cos(sections) + sin_angle.unsqueeze(1) * torch.sin(sections)
        # (1 + cos(θ - θ_z))^ζ as exp(ζ ln(·)): 2x faster than pow with its backward; the base is >= 0.24 here
        angle_factor = torch.exp(self.angular_zeta * torch.log(1.0 + cos_difference))  # (T, sections)
        shifts = self.angular_shifts.to(dtype)
        offsets = 0.5 * distance_sum.unsqueeze(1) - shifts  # (T, shifts)
        exponents = (-self.angular_eta * offsets * offsets).clamp(min=self.exp_floor)
        radial_factor = torch.exp(exponents)  # (T, shifts)
        radial_factor = radial_factor * (2.0 ** (1.0 - self.angular_zeta) * cutoff_product).unsqueeze(1)
        # outer product as two products with 0/1 expansion matrices and one contiguous product: exact, and with
        # its backward (matrix products again) ~1.6x faster on CPU than a broadcast product and its sums
        expanded_radial = radial_factor @ self.shift_expansion.to(dtype)  # (T, shifts*sections)
        return expanded_radial * (angle_factor @ self.section_expansion.to(dtype))  # (T, shifts*sections)

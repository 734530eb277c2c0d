"""What a user looks at after training: learning curves and parity plots (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import pathlib

import numpy as np

__all__ = ('plot_learning_curves', 'plot_parity')

#: Label -> (axis title, unit) of the parity panels.
PARITY_PANELS = {'energy': ('energy', 'eV'), 'forces': ('force components', 'eV/Å'),
                 'charges': ('charges', 'e'), 'dipole': ('dipole components', 'e·Å')}


def _figure(n_panels: int):
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 4.0), squeeze=False)
    return plt, figure, axes[0]


def plot_learning_curves(history: list[dict[str, float]], path: str | pathlib.Path) -> pathlib.Path:
    """Validation RMSE per label, training MSE per task and the learned weights against the epoch."""
    plt, figure, (errors, losses, weights) = _figure(3)
    epochs = [row['epoch'] for row in history]
    for key in history[0]:
        if key.startswith('validation_') and key.endswith('_rmse') and 'per_atom' not in key:
            errors.plot(epochs, [row[key] for row in history], label=key.removeprefix('validation_'))
        elif key.startswith('train_') and key.endswith('_mse'):
            losses.plot(epochs, [row[key] for row in history], label=key.removeprefix('train_'))
        elif key.startswith('weight_'):
            weights.plot(epochs, [row[key] for row in history], label=key.removeprefix('weight_'))
    for axis, title in ((errors, 'validation RMSE (eV, eV/Å, e, e·Å)'), (losses, 'training MSE per task'),
                        (weights, 'loss weights 1/(2σ²)')):
        axis.set_yscale('log')
        axis.set_xlabel('epoch')
        axis.set_title(title)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return pathlib.Path(path)


def plot_parity(predictions: dict[str, tuple[np.ndarray, np.ndarray]], path: str | pathlib.Path,
                title: str = 'validation') -> pathlib.Path:
    """Predicted against reference for each label present; energies per atom, relative to their mean."""
    names = [name for name in PARITY_PANELS if name in predictions]
    plt, figure, axes = _figure(len(names))
    for axis, name in zip(axes, names, strict=True):
        predicted, reference = (np.ravel(values) for values in predictions[name])
        label, unit = PARITY_PANELS[name]
        if name == 'energy':
            atoms = predictions['n_atoms']
            predicted, reference = predicted / atoms, reference / atoms
            shift = reference.mean()
            predicted, reference = predicted - shift, reference - shift
            label, unit = 'energy per atom − mean', 'eV/atom'
        rmse = float(np.sqrt(np.mean(np.square(predicted - reference))))
        axis.scatter(reference, predicted, s=4, alpha=0.6)
        low, high = float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max()))
        axis.plot([low, high], [low, high], color='black', linewidth=0.8)
        axis.set_xlabel(f'reference ({unit})')
        axis.set_ylabel(f'QRNN ({unit})')
        axis.set_title(f'{title} {label}\nRMSE {rmse:.3g} {unit}')
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return pathlib.Path(path)

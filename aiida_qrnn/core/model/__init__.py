"""The QRNN potential in PyTorch (no AiiDA): neighbours, AEV, charge equilibration, the model, ASE calculator.

Heavy pieces are imported from their modules: ``from aiida_qrnn.core.model.qrnn import QRNN, QRNNConfig, evaluate``,
``from aiida_qrnn.core.model.calculator import QRNNCalculator, load_model, save_model``,
``from aiida_qrnn.core.model.committee import Committee``. docs/model.md describes the architecture.
"""

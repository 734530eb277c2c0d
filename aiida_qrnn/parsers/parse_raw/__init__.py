"""Pure parsing functions for the outputs of the codes the package runs; they never import AiiDA."""

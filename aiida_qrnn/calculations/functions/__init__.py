"""Calcfunctions of the package that are not steps of one work chain: cutting and joining cluster sets
(:mod:`.cluster_sets`)."""

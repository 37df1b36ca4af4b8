"""Importers of SSD checkpoints trained with other codebases (pytorch-ssd, ...), one module per codebase.

A module here that defines ``IMPORTER = importers.base.Importer(...)`` is found by itself
(:mod:`importers.registry`): it recognises its codebase and network from a state dict's keys and shapes,
and builds the network as that codebase computes it, with the metadata of that codebase's priors,
pre-processing and post-processing. docs/checkpoints.md lists what each one takes.
"""

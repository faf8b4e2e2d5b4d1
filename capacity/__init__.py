"""Thesis 000, ch. 5: effective capacity (see README.md).

Public for other chapters: ``capacity.config.CapacityConfig`` and
``capacity.models.trained_models(cfg, ctx) -> CapacityModels`` (the classifiers f_i, the SegNet,
the variables of A_S and every A_i, a jitted reconstruct). Nothing heavy is imported here.
"""

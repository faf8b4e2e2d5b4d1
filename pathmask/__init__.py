"""Document 003, ch. 4-5 and app. B-C: VAE semantic morphing and path-mask attribution, in JAX/Flax.

Public entry for later chapters: ``pathmask.attribution.path_mask_saliency(model, images, targets)``.
"""

"""Thesis 000, chapter 6: StSNets (classifier behind its fine-tuned autoencoder) under white-box attacks."""

"""Models: the deep-query vision encoder, the two-pass FoveatedVLM and the VAE wrapper."""

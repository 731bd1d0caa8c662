"""fovea: prediction-head experiments for a foveated video-language model."""

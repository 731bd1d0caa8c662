"""Data for the pipeline; import the modules themselves (nothing is re-exported here, so a light
module such as :mod:`fovea.data.split` does not pull in torch or PyAV).

- :mod:`fovea.data.sources`: the ``videos`` stage, one module per video source.
- :mod:`fovea.data.control`, :mod:`fovea.data.synthetic`: the synthetic tasks' clips.
- :mod:`fovea.data.encode`, :mod:`fovea.data.decode`: MP4 encoding; decoding, frame sampling,
  resize + centre crop.
- :mod:`fovea.data.shards`: temp-then-rename shard writing, shard readers, training streams.
- :mod:`fovea.data.split`: train/val split by a stable hash of the key.
- :mod:`fovea.data.latents`: the ``latents`` stage (``cache_latents``, ``iter_training_frames``).
"""

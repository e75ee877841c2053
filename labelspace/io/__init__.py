"""What every scaledet command does with files, below the label-space and detector code that uses it.

Nothing here knows about labels or detectors; both ``scaledet.labelspace`` and ``scaledet.detector``
build on it, and it imports nothing of theirs (``tests/test_layers.py``):

- ``errors``: the one-line errors users see, and how any exception becomes one (``explain``);
- ``temporaries``: signed names for temporary files and staging folders, and sweeping a killed run's;
- ``atomic``: write to a temporary, then rename, so a reader sees the old file or the whole new one;
- ``output_dirs``: which folders a command may write, their lock and marker, and what they own;
- ``sealed_json``: small JSON documents that carry the sha256 of their own content;
- ``digests``: sha256 of files, whole or sampled;
- ``text_files``: reading users' text (BOMs, duplicate YAML keys, bombs, deep JSON, invisible names);
- ``json_values``: checks of values read from JSON (``true`` is not category 1);
- ``cache_dir``: where caches live;
- ``weights_hash``: weights-file digests, remembered under a signature;
- ``parquet_files``: one Parquet file read without ``pyarrow.dataset`` (and pandas);
- ``torchscript_weights``: a TorchScript archive's tensors, read without running anything in it.
"""

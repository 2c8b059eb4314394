"""ProGAN multi-resolution TFRecord datasets: the format, reading, writing, sources, tools.

- ``fileformat``: the on-disk format (file names, records, the pyramid, label files), shared
  by the reader and the writer;
- ``reader``: scanning and validating a dataset, tf.data pipelines, the trainer's per-stage
  input (``stage_input``) and the training-side transforms (``to_float``, ``mirror``,
  ``fade_lod``);
- ``writer``: atomic, sharded, threaded writing of any source;
- ``sources.*``: one module per source family, each with its ``open_*`` and ``create_*``;
- ``inspection``: ``info``/``--verify``, ``display``, ``extract``, ``compare``;
- ``cli``: the ``progan-dataset`` command, the only module that reads flags;
- ``errors``: DatasetError (reading), ToolError (user-facing), SkipImage.
"""

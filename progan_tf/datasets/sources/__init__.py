"""One module per source family; each has an ``open_*`` function giving a ``writer.Source``
and the ``create_*`` function that ``progan-dataset create_*`` runs."""

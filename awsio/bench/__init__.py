"""awsio's benchmarks: one measurement engine, a registry of peers, and the programs that use them.

    python -m awsio.bench.reader     # whole objects read in one process (2,000 x 100 KiB, 16 x 64 MiB)
    python -m awsio.bench.dataset    # tar shards through a DataLoader (16 x 64 MiB, 0 and 2 workers)
    python -m awsio.bench.pipeline   # decode + resize + to tensor in batches (0 and 2 workers)
    python -m awsio.bench.train      # the torchrun x2 SmallCNN job: samples/s, data-wait %

:mod:`~awsio.bench.engine` measures (:mod:`~awsio.bench.worker` is its subprocess side),
:mod:`~awsio.bench.stats` holds the statistics, :mod:`~awsio.bench.report` the table, files and
chart, :mod:`~awsio.bench.data` the data sets, :mod:`~awsio.bench.peers` the loaders. Development
tools: not part of the library wheel (see pyproject.toml's ``wheel.exclude``).
"""

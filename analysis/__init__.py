"""Analysis of benchmark results: loading, statistics, figures and paper numbers.

Everything here reads only ``results/<sweep>/runs.parquet`` and
``results/<sweep>/curves.parquet`` (the aggregated tables of one sweep).
"""

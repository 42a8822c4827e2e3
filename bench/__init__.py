"""The benchmark harness of issue 7: ``bench/run.sh`` (``python -m bench``) runs every case."""

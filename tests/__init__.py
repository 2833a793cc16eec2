"""tickpipe's tests, in folders that mirror the source.

``core``, ``producer``, ``consumers``, ``api`` and ``simulator`` hold one test
module per source module; ``system`` holds whole runs of several services;
``helpers`` holds what they share that is not a fixture (fixtures live in the
``conftest.py`` files).
"""

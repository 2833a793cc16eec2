"""The development stack: what lets tickpipe run on one machine with only Python.

Embedded PostgreSQL, Redis and Kafka (Apache Kafka from Maven's jars, or Tansu),
the process plumbing they share, the TCP proxy that tests and benchmarks put
faults through, and ``tickpipe up``. Deployments use none of it: they point the
services at real servers through ``DATABASE_URL``, ``REDIS_URL`` and
``KAFKA_BOOTSTRAP_SERVERS``.
"""

"""Apache Kafka for the tests, the benchmarks and `make kafka` (see broker.py)."""

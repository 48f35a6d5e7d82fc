"""The night: the one implementation of its steps (:mod:`.steps`), called by the CLI, the Airflow
DAGs (through :mod:`.airflow`), the demo and the benchmarks; ingestion partitions; notifications."""

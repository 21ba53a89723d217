"""HJ 212 ingest: Twisted TCP server, spool-backed writer and InfluxDB client (sans-IO codec in ``hj212``)."""

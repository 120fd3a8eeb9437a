"""Technic HTTP API (FastAPI): reads the warehouse, serves results and streams new ones."""

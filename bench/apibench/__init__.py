"""The pieces of bench/api.py: seeding, the service process, the load generators."""

"""The HTTP layer (aiohttp): app assembly, ingest, operator API."""

"""CPU benchmark of the site's attention implementations: ``python -m bench.run``."""

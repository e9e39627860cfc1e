"""CPU benchmark of the site's attention implementations: ``python -m bench.run``.

``run`` is the command; ``config`` the sizes and methods; ``cases`` one method at one
size; ``timing`` timing on a shared machine; ``memory`` peak memory, measured by the
worker ``python -m bench.memory``; ``measure`` the measurements; ``targets`` the
ratios the docs quote; ``report`` the machine and the printed table.
"""

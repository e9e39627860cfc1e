"""The site's generated files: figures drawn from ``snippets`` and widget data.

One module per page, named like that page's ``snippets`` module. Each declares

    GENERATED = {"figures/name.svg": function}

from a path inside the site to a function of no arguments that returns the file's
content; ``hooks/generated.py`` calls every function once per build. The numbers come
from ``snippets``; these modules only draw, through ``figures.svg``.
"""

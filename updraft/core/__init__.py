"""The common core: what every component shares, importing nothing else of Updraft's.

The pool, the factory, the frontend and the pilot import from here (and the service
plumbing in ``updraft.service``), never from each other; only the ``updraft`` command and the
demo import components.  The wire protocol (paths, payloads, answers, ad attribute names)
is defined here once.  The modules the pilot bundles (``PILOT_BUNDLE``) are standard library
only and run on Python 3.9, as bare worker nodes have it.
"""

#: the core modules the pilot zipapp carries (pilot/build.py); standard library only, Python >= 3.9
PILOT_BUNDLE = (
    "errors",
    "protocol",
    "payloads",
    "transport",
    "client",
    "layout",  # where a client finds its pool (client.default_home)
    "arglist",
    "pilotrecord",
    "pilotparams",
    "states",
)

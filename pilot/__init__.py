"""The Updraft pilot (glidein): validates a worker node, then pulls and runs user jobs.

Standard library only, Python >= 3.9: it is built into one zipapp (updraft pilot build)
that bundles the pool's wire protocol and client.  requests and psutil are used when
they are importable on the node.
"""

"""The compiled parts: the linear stage of one name in C (`resolverguard/_ngramc.c`, #13: batch 1),
recvmmsg/sendmmsg for the UDP listener (`resolverguard/_udpbatch.c`, #17), and the query log's
per-query work (`resolverguard/_logc.c`, #17: packing on the event loop, lines in the writer), an
upstream answer's read, bailiwick check and rewrite (`resolverguard/_wirec.c`, #17), and the name
memo's values as objects the garbage collector does not track (`resolverguard/_namec.c`, #17).

Everything else is in pyproject.toml. The extensions are optional: without a C compiler (or Python's
headers) the install goes on and serving uses the pure-Python featurizer (the same floats), one system
call per datagram (resolverguard/udpbatch.py), the pure-Python log writer (the same lines) and the
pure-Python answer reader (`replies.forwarded_read`: the same bytes) and the dataclass
`RegistrableName` (the same values, tracked by the garbage collector), slower.
`-ffp-contract=off`: no fused multiply-add, so the floats stay the pure-Python featurizer's bit for bit.
"""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O2", "-ffp-contract=off", "-fno-fast-math"]

NGRAMC = Extension("resolverguard._ngramc", ["resolverguard/_ngramc.c"], extra_compile_args=FLAGS, optional=True)

UDPBATCH = Extension("resolverguard._udpbatch", ["resolverguard/_udpbatch.c"], extra_compile_args=FLAGS, optional=True)

LOGC = Extension("resolverguard._logc", ["resolverguard/_logc.c"], extra_compile_args=FLAGS, optional=True)

WIREC = Extension("resolverguard._wirec", ["resolverguard/_wirec.c"], extra_compile_args=FLAGS, optional=True)

NAMEC = Extension("resolverguard._namec", ["resolverguard/_namec.c"], extra_compile_args=FLAGS, optional=True)

setup(ext_modules=[NGRAMC, UDPBATCH, LOGC, WIREC, NAMEC])

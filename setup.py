"""The compiled parts: the linear stage of one name in C (`resolverguard/_ngramc.c`, #13: batch 1), and
recvmmsg/sendmmsg for the UDP listener (`resolverguard/_udpbatch.c`, #17: never-seen names).

Everything else is in pyproject.toml. Both extensions are optional: without a C compiler (or Python's
headers) the install goes on and serving uses the pure-Python featurizer (the same floats, slower)
and one system call per datagram (resolverguard/udpbatch.py).
`-ffp-contract=off`: no fused multiply-add, so the floats stay the pure-Python featurizer's bit for bit.
"""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O2", "-ffp-contract=off", "-fno-fast-math"]

NGRAMC = Extension("resolverguard._ngramc", ["resolverguard/_ngramc.c"], extra_compile_args=FLAGS, optional=True)

UDPBATCH = Extension("resolverguard._udpbatch", ["resolverguard/_udpbatch.c"], extra_compile_args=FLAGS, optional=True)

setup(ext_modules=[NGRAMC, UDPBATCH])

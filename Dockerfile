# tqd: one durable queue server. Data lives in the /data volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    TQD_HOST=0.0.0.0 TQD_PORT=7070 TQD_DATA=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY tqd ./tqd
RUN pip install --no-compile . \
 && useradd --system --uid 10001 --home-dir /data --create-home tqd \
 && chown tqd /data

USER tqd
VOLUME ["/data"]
EXPOSE 7070
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:7070/healthz', timeout=2); sys.exit(0)"]
# tqd handles SIGTERM itself (drains, flushes, unlocks), so it can run as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tqd"]
CMD ["serve"]

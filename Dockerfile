# fhir-gateway: one image for the API server and the CLI.
FROM python:3.11.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY fhir_gateway ./fhir_gateway
COPY mappings ./mappings
COPY profiles ./profiles
RUN pip install --no-cache-dir . && useradd --system --uid 10001 gateway
USER gateway
EXPOSE 8000
# Settings come from FHIR_GATEWAY_* variables (see README, Configuration).
CMD ["fhir-gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]

# The segmentation worker. Settings load config/default.yaml from the source tree, so the tree is
# installed in place (editable) and config/ stays next to the packages.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY features ./features
COPY segmenter ./segmenter
COPY streams ./streams
COPY config ./config
RUN pip install -e . && useradd --create-home --uid 10001 segmenter

USER segmenter
EXPOSE 9108
ENTRYPOINT ["segmenter"]
CMD ["worker"]

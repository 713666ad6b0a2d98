# A node of the crisis data exchange. The node directory (settings, keys, gazetteer, policy,
# SQLite database) is a volume: create it once with `exchange init`, then serve it.
#
#   docker build -t crisis-exchange .
#   docker run --rm -v "$PWD/node-xa:/node" crisis-exchange init /node --node-id XA --name "Republic of XA"
#   docker run --rm -p 8000:8000 -v "$PWD/node-xa:/node" crisis-exchange
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY policies policies
COPY nodes nodes
COPY exchange exchange
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
RUN groupadd --system exchange && useradd --system --gid exchange --home-dir /node --shell /usr/sbin/nologin exchange \
    && mkdir /node && chown exchange:exchange /node && chmod 750 /node
USER exchange
VOLUME ["/node"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
ENTRYPOINT ["exchange"]
CMD ["serve", "/node", "--host", "0.0.0.0", "--port", "8000"]

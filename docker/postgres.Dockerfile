# A PostgreSQL server image for docker-compose.postgres.yml where Docker Hub is out of reach: Debian's
# postgresql (15 on bookworm) on the local base image, with the official image's entrypoint contract as
# far as the compose files use it: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB create the superuser
# and the database on the first start, data in /var/lib/postgresql/data (PGDATA), `pg_isready` on PATH,
# arguments starting with `-` go to `postgres` (e.g. `-c listen_addresses=127.0.0.1`), PGPORT honoured.
#
#   docker build --network host --build-arg BASE_IMAGE=vl2v-base:bookworm \
#     -f docker/postgres.Dockerfile -t vl2v-postgres:latest .
#
# apt needs the network during the build (--network host). docs/docker.md, "Replicas on PostgreSQL".
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# no `main` cluster from the package's postinst: the entrypoint makes the one in PGDATA
RUN mkdir -p /etc/postgresql-common/createcluster.d \
    && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/no-main-cluster.conf \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
    && rm -rf /var/lib/apt/lists/* \
    && PGBIN=$(ls -d /usr/lib/postgresql/*/bin) && ln -s "$PGBIN" /usr/lib/postgresql/bin \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data

COPY docker/postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["sh", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]

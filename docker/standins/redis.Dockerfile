# Stand-in for the official `redis` image where no image registry is reachable (make
# compose-e2e): Debian bookworm's Redis 7, run as its own user, data in /data; compose passes the
# whole `redis-server ...` command line.
ARG BASE_IMAGE=ct-base:bookworm
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update -q && apt-get install -y -q --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]

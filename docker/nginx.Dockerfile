# An nginx image for docker-compose.postgres.yml's load balancer `lb` where Docker Hub is out of reach:
# Debian's nginx (1.22 on bookworm) on the local base image, with the official image's contract as far
# as the compose files use it: the site in /etc/nginx/conf.d/default.conf (Debian's own default site,
# port 80, is removed), `nginx -g 'daemon off;'` in the foreground, access log on stdout and error log
# on stderr (`docker logs`).
#
#   docker build --network host --build-arg BASE_IMAGE=vl2v-base:bookworm \
#     -f docker/nginx.Dockerfile -t vl2v-nginx:latest .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log

EXPOSE 8000
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]

# Portico's container image: a gateway node (or a control plane, with a
# mounted configuration file).  deploy/README.md says how to build and run it.
#
# Two stages on Debian 12 slim.  The build stage takes the same steps as
# .ci/run and the README: the build packages of scripts/deps, ./autogen.sh,
# configure, make, and `make install` into a staging folder.  The runtime
# stage gets only the shared libraries the binary and its plugins link
# against, and the installed files it needs from the staging folder
# (tests/e2e/test_packaging.py checks each path copied below against a real
# `make install DESTDIR=...`).

FROM debian:12-slim AS build
# the build packages of scripts/deps (not the test, browser or bench ones)
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      build-essential autoconf automake libtool pkg-config \
      libevent-dev libluajit-5.1-dev libyaml-dev libssl-dev zlib1g-dev libjansson-dev \
      libsqlite3-dev libxml2-dev node-llhttp libcmark-dev libcurl4-openssl-dev libargon2-dev \
      libxslt1-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN ./autogen.sh >/dev/null \
 && mkdir -p /build && cd /build \
 && /src/configure --prefix=/usr --sysconfdir=/etc --localstatedir=/var --disable-unit-tests \
 && make -j"$(nproc)" \
 && make install DESTDIR=/staging \
 && /staging/usr/bin/portico -v

FROM debian:12-slim
# the libraries `readelf -d` lists as NEEDED by usr/bin/portico and the
# plugins (libc's are in the base image), and the system CAs for an https
# control plane
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      libevent-2.1-7 libevent-openssl-2.1-7 libevent-pthreads-2.1-7 libluajit-5.1-2 libyaml-0-2 \
      libssl3 zlib1g libjansson4 libsqlite3-0 libxml2 libxslt1.1 libcmark0.30.2 libcurl4 libargon2-1 \
      libnghttp2-14 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# the binary, its plugins (pkglibdir), the Lua prelude, Lua policies and the
# portal's files (pkgdatadir); not the example configuration of
# /etc/portico: with no file there, PORTICO_CONTROL_PLANE_URL makes a node
COPY --from=build /staging/usr/bin/portico /usr/bin/portico
COPY --from=build /staging/usr/lib/portico/plugins/ /usr/lib/portico/plugins/
COPY --from=build /staging/usr/share/portico/ /usr/share/portico/
RUN rm -f /usr/lib/portico/plugins/*.la \
 && groupadd --system --gid 10001 portico \
 && useradd --system --uid 10001 --gid portico --home-dir /var/lib/portico --shell /usr/sbin/nologin portico \
 && mkdir -p /var/lib/portico /etc/portico \
 && chown portico:portico /var/lib/portico \
 && chmod 0700 /var/lib/portico
USER portico
WORKDIR /var/lib/portico
# the node's data: the encrypted configuration backup (config-backup) it
# starts from when the control plane cannot be reached
VOLUME /var/lib/portico
# 8080: HTTP, 8081: HTTPS (a listener with a certificate, in a mounted file)
EXPOSE 8080 8081
# SIGTERM drains: in-flight requests finish (timeouts.shutdown, 30 s)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/bin/portico", "probe", "http://127.0.0.1:8080/status-0123456789abcdef"]
# The container case of the contract: no file, only the environment
# (PORTICO_CONTROL_PLANE_URL, PORTICO_GATEWAY_TOKEN, ...): a gateway node
# listening on 0.0.0.0:8080 with its data in /var/lib/portico.  A file
# mounted at /etc/portico/portico.yaml (or -c FILE) is used instead.
CMD ["/usr/bin/portico"]

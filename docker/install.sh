#!/bin/sh
# The one install recipe of the project's images, run by every Dockerfile of docker/
# (so the scripted build, FROM mpr/base, and a registry build, FROM debian, are the same).
#   install.sh packages ROLE   Debian packages of ROLE (httpd | backend | router)
#   install.sh files ROLE      the project's files of ROLE, from the build context in /tmp/ctx
set -eu
step=$1
role=$2
ctx=/tmp/ctx
export DEBIAN_FRONTEND=noninteractive

packages() {
  # No package may start a service while the image is built.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  case $role in
    httpd) pkgs="apache2 ca-certificates curl iproute2 procps" ;;
    # tomcat10 pulls the headless JRE; curl for health checks.
    backend) pkgs="tomcat10 curl iproute2 procps" ;;
    router) pkgs="nftables iproute2 procps curl" ;;
    *) echo "install.sh: unknown role '$role' (httpd, backend, router)" >&2; exit 2 ;;
  esac
  apt-get update -q
  apt-get install -y -q --no-install-recommends $pkgs
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
}

files_httpd() {
  moddir=/usr/lib/apache2/modules
  install -m 0644 "$ctx/target/release/libmod_proxy_reversed.so" "$moddir/mod_proxy_reversed.so"
  sed "s#@MODDIR@#$moddir#" "$ctx/httpd-conf/proxy_reversed.load" >/etc/apache2/mods-available/proxy_reversed.load
  cp "$ctx/httpd-conf/proxy_reversed.conf" /etc/apache2/mods-available/proxy_reversed.conf
  a2enmod -q proxy proxy_ajp proxy_http proxy_balancer lbmethod_byrequests slotmem_shm proxy_reversed >/dev/null
  a2dissite -q 000-default >/dev/null
  # The operator's configuration: files mounted into /etc/apache2/reversed.d.
  mkdir -p /etc/apache2/reversed.d
  cp "$ctx/docker/httpd/docker.conf" /etc/apache2/conf-available/mpr-docker.conf
  a2enconf -q mpr-docker >/dev/null
  # Logs go to the container's stdout/stderr (the files are opened by httpd's root parent).
  ln -sf /proc/self/fd/2 /var/log/apache2/error.log
  ln -sf /proc/self/fd/1 /var/log/apache2/access.log
  ln -sf /proc/self/fd/1 /var/log/apache2/other_vhosts_access.log
  install -m 0755 "$ctx/docker/httpd/entrypoint.sh" /usr/local/bin/mpr-httpd-entrypoint
  apache2ctl -t -D MPR_IMAGE_BUILD 2>&1 | grep -q "Syntax OK" || { apache2ctl -t; exit 1; }
}

files_backend() {
  install -m 0755 "$ctx/target/release/reversed-agent" /usr/local/bin/reversed-agent
  /usr/local/bin/reversed-agent --help >/dev/null
  # Tomcat: connectors on loopback only (AJP 8009, HTTP 8080), logs on stdout.
  cp "$ctx/docker/backend/server.xml" /etc/tomcat10/server.xml
  chown root:tomcat /etc/tomcat10/server.xml
  chmod 0640 /etc/tomcat10/server.xml
  rm -rf /var/lib/tomcat10/webapps/ROOT
  cp -r "$ctx/docker/backend/webapp" /var/lib/tomcat10/webapps/ROOT
  chown -R tomcat:tomcat /var/lib/tomcat10/webapps/ROOT
  install -m 0755 "$ctx/docker/backend/entrypoint.sh" /usr/local/bin/mpr-backend-entrypoint
}

files_router() {
  install -m 0755 "$ctx/docker/router/entrypoint.sh" /usr/local/bin/mpr-router-entrypoint
  install -m 0755 "$ctx/docker/router/mpr-fw" /usr/local/sbin/mpr-fw
}

case $step in
  packages) packages ;;
  files) "files_$role"; rm -rf "$ctx" ;;
  *) echo "install.sh: unknown step '$step' (packages, files)" >&2; exit 2 ;;
esac

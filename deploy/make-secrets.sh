#!/bin/sh
# Creates the deployment's secrets in /secrets, keeping any file that already exists there, so an operator
# can bring their own (mount a host directory: AITBC_SECRETS_DIR=./secrets docker compose up -d):
#   postgres_password, coordinator_database_url, poolhub_database_url, poolhub_token,
#   grafana_admin_password, tls.crt + tls.key (self-signed for localhost when none is given).
set -eu
cd /secrets
umask 022
random() { python -c "import secrets; print(secrets.token_urlsafe(32))"; }
[ -s postgres_password ] || random > postgres_password
pw=$(cat postgres_password)
[ -s coordinator_database_url ] || echo "postgresql+psycopg://aitbc:${pw}@postgres:5432/coordinator" > coordinator_database_url
[ -s poolhub_database_url ] || echo "postgresql+psycopg://aitbc:${pw}@postgres:5432/poolhub" > poolhub_database_url
[ -s poolhub_token ] || random > poolhub_token
[ -s grafana_admin_password ] || random > grafana_admin_password
if [ ! -s tls.crt ] || [ ! -s tls.key ]; then
  openssl req -x509 -newkey rsa:2048 -sha256 -days 365 -nodes -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout tls.key -out tls.crt 2>/dev/null
fi
# Files read only by AITBC processes (uid 10001) or by root (the TLS proxy) stay private; the PostgreSQL and
# Grafana images run as their own users and must read theirs.
chmod 600 coordinator_database_url poolhub_database_url poolhub_token tls.key 2>/dev/null || true
chmod 644 postgres_password grafana_admin_password tls.crt
echo "secrets ready in /secrets (existing files kept)"

#!/bin/sh
# Creates the deployment's secrets in /secrets, keeping any file that already exists there, so an operator
# can bring their own (mount a host directory: AITBC_SECRETS_DIR=./secrets docker compose up -d):
#   postgres_password, coordinator_database_url, poolhub_database_url, exchange_database_url, poolhub_token,
#   grafana_admin_password, tls.crt + tls.key (self-signed for localhost when none is given),
#   exchange.key (the exchange's AITBC key), bitcoin_rpc_url + bitcoin.conf (Bitcoin Core's RPC password,
#   kept there only as a salted hash: rpcauth).
set -eu
cd /secrets
umask 022
random() { python -c "import secrets; print(secrets.token_urlsafe(32))"; }
[ -s postgres_password ] || random > postgres_password
pw=$(cat postgres_password)
[ -s coordinator_database_url ] || echo "postgresql+psycopg://aitbc:${pw}@postgres:5432/coordinator" > coordinator_database_url
[ -s poolhub_database_url ] || echo "postgresql+psycopg://aitbc:${pw}@postgres:5432/poolhub" > poolhub_database_url
[ -s exchange_database_url ] || echo "postgresql+psycopg://aitbc:${pw}@postgres:5432/exchange" > exchange_database_url
[ -s poolhub_token ] || random > poolhub_token
[ -s exchange.key ] || aitbc keys new exchange --keys-dir /secrets >/dev/null
if [ ! -s bitcoin_rpc_url ] || [ ! -s bitcoin.conf ]; then
  btc_pw=$(random)
  echo "http://aitbc:${btc_pw}@bitcoind:8332" > bitcoin_rpc_url
  python -c "import hashlib, hmac, secrets, sys; salt = secrets.token_hex(16); \
print('rpcauth=aitbc:' + salt + '\$' + hmac.new(salt.encode(), sys.argv[1].encode(), hashlib.sha256).hexdigest())" \
    "$btc_pw" > bitcoin.conf
fi
[ -s grafana_admin_password ] || random > grafana_admin_password
if [ ! -s tls.crt ] || [ ! -s tls.key ]; then
  openssl req -x509 -newkey rsa:2048 -sha256 -days 365 -nodes -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout tls.key -out tls.crt 2>/dev/null
fi
# Files read only by AITBC processes (uid 10001) or by root (the TLS proxy) stay private; the PostgreSQL,
# Grafana and Bitcoin Core images run as their own users and must read theirs (bitcoin.conf holds a hash only).
chmod 600 coordinator_database_url poolhub_database_url exchange_database_url poolhub_token tls.key \
  exchange.key bitcoin_rpc_url 2>/dev/null || true
chmod 644 postgres_password grafana_admin_password tls.crt bitcoin.conf
echo "secrets ready in /secrets (existing files kept)"

#!/bin/sh
# One-shot set-up of a fresh deployment, run by the `bootstrap` service once the chain and the coordinator
# answer. Idempotent: every step leaves a marker in /bootstrap and is skipped when its marker exists.
#   1. the faucet (genesis key of validator 0) funds the coordinator, which pays settle/refund tx fees;
#   2. a client key is created and funded;
#   3. an API key bound to that client is created in the coordinator's database and kept in
#      /bootstrap/client.apikey (read it with `docker compose exec coordinator cat /bootstrap/client.apikey`).
set -eu
RPC=${AITBC_RPC_URL:-http://validator0:9080/}
COORDINATOR=${AITBC_COORDINATOR_URL:-http://coordinator:8011}
FAUCET=${AITBC_FAUCET_KEY:-/net/node0/faucet.key}
OUT=/bootstrap
mkdir -p "$OUT/keys"

coordinator_address=$(python -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1] + '/healthz', timeout=10))['coordinator'])" "$COORDINATOR")

if [ ! -e "$OUT/coordinator.funded" ]; then
  aitbc tx transfer --rpc "$RPC" --from "$FAUCET" --to "$coordinator_address" --amount 1000 --memo "deploy: coordinator fees" --wait
  touch "$OUT/coordinator.funded"
fi

if [ ! -e "$OUT/keys/client.key" ]; then
  aitbc keys new client --keys-dir "$OUT/keys"
fi
client_address=$(aitbc keys show client --keys-dir "$OUT/keys" | awk '/address/{print $2}')

if [ ! -e "$OUT/client.funded" ]; then
  aitbc tx transfer --rpc "$RPC" --from "$FAUCET" --to "$client_address" --amount 10000 --memo "deploy: client funds" --wait
  touch "$OUT/client.funded"
fi

if [ ! -s "$OUT/client.apikey" ]; then
  umask 077
  aitbc coordinator keys create --data-dir /coordinator --name deploy-client --client "$client_address" \
    --database-url "$AITBC_COORDINATOR_DATABASE_URL" | tail -n 1 > "$OUT/client.apikey.tmp"
  mv "$OUT/client.apikey.tmp" "$OUT/client.apikey"
fi
echo "bootstrap done: coordinator $coordinator_address funded, client $client_address, API key in $OUT/client.apikey"

#!/bin/sh
# Container entrypoint: secrets come from files. For every variable NAME_FILE=/path whose NAME starts with
# AITBC_, export NAME with the file's content (the convention of the official database images), so a
# password or token never sits in the image, the compose file or `docker inspect`. Then run the command.
# A setting that is itself a path (key_file, tls_cert_file, hot_key_file, passphrase_file…: names ending in
# KEY_FILE, CERT_FILE, SEED_FILE, PASSPHRASE_FILE, MNEMONIC_FILE, ANNOUNCE_FILE, MODEL_FILE) passes unchanged:
# the service opens that file itself (tests/unit/deploy checks every path setting of the code is kept).
set -eu
for var in $(env | sed -n 's/^\(AITBC_[A-Z0-9_]*\)_FILE=.*/\1/p' \
    | grep -Ev '_(KEY|CERT|SEED|PASSPHRASE|MNEMONIC|ANNOUNCE|MODEL)$'); do
  file=$(printenv "${var}_FILE")
  if [ ! -r "$file" ]; then
    echo "aitbc-entrypoint: ${var}_FILE=$file is not a readable file" >&2
    exit 64
  fi
  value=$(cat "$file")
  export "$var=$value"
  unset "${var}_FILE"
done
exec "$@"
